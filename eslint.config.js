import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Folders above services (and context.ts, which wires everything): nothing below may import them. */
const TRANSPORTS = ['api', 'grpc', 'workers', 'main', 'context'];

/** One no-restricted-imports rule per folder: `files` may not import `above` (src folders) or `packages`. */
function layers(rules) {
  return rules.map(([files, above, packages = []]) => ({
    files: [files],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: packages.map((name) => ({ name, message: 'Services know nothing of their transport.' })),
          patterns: [
            {
              regex: `^(\\.\\./)+(${above.join('|')})(/|\\.js$)`,
              message: `Layers point down: ${files} may not import ${above.join(', ')} (see README).`,
            },
          ],
        },
      ],
    },
  }));
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.data/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Read configuration through src/config/config.ts.' },
      ],
    },
  },
  // Layers point down: transports (api, grpc, workers, main) -> services -> repositories, redis, jobs,
  // payment (the payment service's client) -> lib, config. Each folder may not import the ones above it.
  ...layers([
    ['src/lib/**', ['config', 'payment', 'jobs', 'redis', 'repositories', 'services', ...TRANSPORTS]],
    ['src/config/**', ['payment', 'jobs', 'redis', 'repositories', 'services', ...TRANSPORTS]],
    ['src/{repositories,redis,jobs,payment}/**', ['services', ...TRANSPORTS]],
    ['src/services/**', TRANSPORTS, ['express', '@grpc/grpc-js']],
    ['src/{api,grpc,workers}/**', ['main']],
  ]),
  {
    // Tests read loosely typed JSON responses.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    files: [
      'src/config/**',
      'scripts/**',
      'simulator/main.ts',
      'test/**',
      'test/support/**',
      'bench/**',
      'knexfile.ts',
      'src/main/**',
    ],
    rules: { 'no-restricted-properties': 'off' },
  },
);
