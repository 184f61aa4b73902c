// Lint with type information (typescript-eslint): the rules that catch real defects in this code —
// promises left floating or handed where a callback's result is ignored, awaits of non-promises —
// on top of ESLint's and typescript-eslint's recommended sets. Formatting is prettier's business.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'native/index.js', 'native/index.d.ts', 'npm/', 'target/', 'node_modules/', 'bench/.neutron-venv/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // An argument a signature requires but this implementation does not read says so with `_`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);
