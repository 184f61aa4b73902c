// Lint with type information (typescript-eslint): the rules that catch real defects in this code —
// promises left floating or handed where a callback's result is ignored, awaits of non-promises —
// on top of ESLint's and typescript-eslint's recommended sets. Formatting is prettier's business.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'native/index.js',
      'native/index.d.ts',
      'npm/',
      'target/',
      'node_modules/',
      'bench/.neutron-venv/',
      'bench/.openstack-venv/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // An argument a signature requires but this implementation does not read says so with `_`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // An async method of an interface that promises (Dataplane, the sync source…) need not await:
      // what must not be left unhandled is caught by no-floating-promises and no-misused-promises.
      '@typescript-eslint/require-await': 'off',
      // A variable a teardown or a callback reads before its one assignment stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  // Plain JavaScript (this file, scripts): no type information to lint with.
  { files: ['**/*.js', '**/*.mjs', '**/*.cjs'], ...tseslint.configs.disableTypeChecked },
  {
    files: ['scripts/**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        ...Object.fromEntries(['require', '__dirname', 'process', 'console', 'Buffer'].map((g) => [g, 'readonly'])),
        ...Object.fromEntries(['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'].map((g) => [g, 'readonly'])),
        module: 'writable',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
