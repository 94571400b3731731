// ESLint flat config for the repository's JavaScript. `make js-check` runs it from the
// repository root (`eslint -c tools/js/eslint.config.js`), so paths here are from the root.
// Recommended rules only, plus the globals each part runs with.
import js from "@eslint/js";
import globals from "globals";

export default [
  // web_client/vendor/: third-party builds kept as published (docs/third-party.md).
  { ignores: ["**/node_modules/**", ".venv/**", "web_client/vendor/**"] },
  {
    ...js.configs.recommended,
    files: ["web_client/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    ...js.configs.recommended,
    files: ["sdk-node/**/*.js", "tools/js/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
];
