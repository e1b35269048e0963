// Lint: typescript-eslint's recommended rules with type information, for the rules
// that catch what the type checker does not: a promise nobody awaits or handles
// (no-floating-promises, no-misused-promises) is an error swallowed or a race.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

// Every table of schema dbsync but dbsync.verifications (see below).
const INTERNAL_TABLES = [
  "ddl_context", "ddl_log", "events", "groups", "installed_code", "migrations", "monitor_roles", "partitions", "queue_slots",
  "sequences", "shapes", "sidecar_roles", "skipped_ddl", "subscription_sequences", "subscription_tables", "subscriptions",
  "tables", "ticks", "verify_progress",
];

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "bench/results/**", "scratch/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { project: "./tsconfig.check.json", tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test() returns a promise that the runner itself awaits.
      "@typescript-eslint/no-floating-promises": [
        "error",
        { allowForKnownSafeCalls: [{ from: "package", package: "node:test", name: ["test", "describe", "it", "suite"] }] },
      ],
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/no-explicit-any": "off",
      // A `let` assigned once after closures that read it were made (handlers set up
      // before what they stop exists) cannot be a const.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
    },
  },
  {
    // One sidecar <-> source protocol: only src/source/protocol.ts names dbsync's
    // tables (migrate and compat keep their own bookkeeping: it runs before any dbsync
    // function exists). dbsync.verifications is documented for DBAs, like the views.
    files: ["src/**/*.ts"],
    ignores: ["src/source/protocol.ts", "src/migrate.ts", "src/compat.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        ...["Literal[value", "TemplateElement[value.raw"].map((node) => ({
          selector: `${node}=/dbsync[.](${INTERNAL_TABLES.join("|")})\\b/]`,
          message: "dbsync's tables are read and written through src/source/protocol.ts (a SQL function of sql/functions).",
        })),
      ],
    },
  },
);
