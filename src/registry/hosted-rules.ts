/**
 * Which repository names are hosted (push) and which mirrored: the `repositories` rules, in
 * order, first match wins, evaluated on the name exactly as the client sends it, before upstream
 * routing. No rule matching means mirrored, so a config without rules is the mirror it always was.
 * Also the tag globs of `hosted.immutableTags`.
 *
 * Globs: `**` matches any run of characters including `/`, `*` any run within one path component,
 * `?` one character other than `/`. Compiled once at construction.
 *
 * Imports: config types only.
 */
import type { RepositoryRule } from '../config/types.js';

export type RepositoryMode = 'hosted' | 'mirror';

/** Compile a name glob (see the module header) into an anchored RegExp. */
export function nameGlob(glob: string): RegExp {
  let body = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      body += '.*';
      i += 1;
    } else if (c === '*') {
      body += '[^/]*';
    } else if (c === '?') {
      body += '[^/]';
    } else {
      body += c.replace(/[.+^${}()|[\]\\-]/g, '\\$&');
    }
  }
  return new RegExp(`^${body}$`, 's');
}

export class RepositoryRules {
  private readonly rules: { re: RegExp; mode: RepositoryMode }[];

  constructor(rules: readonly RepositoryRule[]) {
    this.rules = rules.map((r) => ({ re: nameGlob(r.match), mode: r.mode }));
  }

  /** True when some rule makes names hosted (pushes are possible at all). */
  get anyHosted(): boolean {
    return this.rules.some((r) => r.mode === 'hosted');
  }

  /** The mode of a name as the client sent it. */
  modeOf(name: string): RepositoryMode {
    for (const r of this.rules) if (r.re.test(name)) return r.mode;
    return 'mirror';
  }
}

/** `hosted.immutableTags`: tags matching one of these globs may be pushed once, never moved. */
export class TagGlobs {
  private readonly res: RegExp[];

  constructor(globs: readonly string[]) {
    this.res = globs.map((g) => new RegExp(`^${g.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's'));
  }

  matches(tag: string): boolean {
    return this.res.some((re) => re.test(tag));
  }
}
