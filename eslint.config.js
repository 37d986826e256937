// Lint: typescript-eslint's recommended rules over the sources and tests; dist/ is build output.
// The folder import rules (docs: ARCHITECTURE.md "Layers") are `no-restricted-imports` per folder
// below; import cycles are caught by scripts/check-imports.mjs, which `npm run lint` runs after
// ESLint.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `no-restricted-imports` for one folder: the named folders of src/ may not be imported from it. */
function forbid(folders, why) {
  return ['error', { patterns: [{ group: folders.flatMap((f) => [`**/${f}/*`, `**/${f}/**`]), message: why }] }];
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/ban-ts-comment': ['error', { 'ts-expect-error': 'allow-with-description', 'ts-ignore': true }],
    },
  },
  {
    files: ['src/oci/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../*', '../**'], message: 'src/oci is the leaf: it imports nothing from src/.' }] }],
    },
  },
  {
    files: ['src/storage/**/*.ts'],
    rules: { 'no-restricted-imports': forbid(['registry', 'http', 'upstream', 'app'], 'src/storage knows nothing above it: no registry/, http/, upstream/ (or app/).') },
  },
  {
    files: ['src/upstream/**/*.ts'],
    rules: { 'no-restricted-imports': forbid(['storage', 'registry', 'http', 'app'], 'src/upstream knows nothing above it: no storage/, registry/, http/ (or app/).') },
  },
  {
    files: ['src/registry/**/*.ts'],
    rules: { 'no-restricted-imports': forbid(['http', 'app'], 'src/registry knows no HTTP: no http/ (or app/); the HTTP layer calls into it.') },
  },
  {
    // The composition root sits above every folder: only the CLI (and workers/) import it.
    files: ['src/auth/**/*.ts', 'src/queue/**/*.ts', 'src/config/**/*.ts', 'src/metrics/**/*.ts', 'src/http/**/*.ts', 'src/*.ts'],
    ignores: ['src/cli.ts'],
    rules: { 'no-restricted-imports': forbid(['app'], 'src/app is the composition root: nothing below it imports it (only src/cli.ts and workers/).') },
  },
  {
    files: ['workers/**/*.ts'],
    rules: { 'no-restricted-imports': forbid(['http'], 'workers reach the cache through registry/, never through http/.') },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
