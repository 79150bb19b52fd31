#!/usr/bin/env node
// The CLI, bundled by scripts/bundle-cli.mjs (npm run build).
import '../dist/cli-bundle/main.js';
