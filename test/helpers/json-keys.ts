// A JSON scanner that reports every object key that appears twice in the same object, which
// JSON.parse silently hides (it keeps the last). Used to hold log lines to "no repeated key":
// jq, Loki and Elasticsearch keep only one of them too. Imports nothing from src/.

export interface DuplicateKey {
  /** Path of the object holding the key, e.g. `$` or `$.err`. */
  path: string;
  key: string;
}

/** Duplicate keys in `text` (one JSON value); throws on text that is not JSON. */
export function duplicateKeys(text: string): DuplicateKey[] {
  let i = 0;
  const found: DuplicateKey[] = [];
  const fail = (what: string): never => {
    throw new Error(`not JSON at ${i}: ${what} in ${text.slice(Math.max(0, i - 20), i + 20)}`);
  };
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] ?? '')) i++;
  };
  const string = (): string => {
    if (text[i] !== '"') fail('expected a string');
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (text[i] !== '"') fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = string();
        if (seen.has(key)) found.push({ path, key });
        seen.add(key);
        ws();
        if (text[i] !== ':') fail('expected :');
        i++;
        value(`${path}.${key}`);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail('expected , or }');
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail('expected , or ]');
      }
    } else if (c === '"') {
      string();
    } else {
      const m = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
      if (!m) fail('unexpected token');
      i += m?.[0].length ?? 0;
    }
  };
  value('$');
  ws();
  if (i !== text.length) fail('trailing text');
  return found;
}
