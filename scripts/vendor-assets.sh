#!/usr/bin/env bash
# Copy the browser files the pages use from node_modules (versions pinned in package-lock.json)
# into the committed static/vendor folder, so running the services needs no npm and no build step.
# Run after changing package.json: npm install && bash scripts/vendor-assets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
dest=src/alexandrite/kit/web/static/vendor
rm -rf "$dest"
mkdir -p "$dest/htmx" "$dest/three/addons/loaders" "$dest/three/addons/controls"
cp node_modules/htmx.org/dist/htmx.min.js "$dest/htmx/"
cp node_modules/three/build/three.module.js node_modules/three/build/three.core.js "$dest/three/"
cp node_modules/three/examples/jsm/loaders/STLLoader.js "$dest/three/addons/loaders/"
cp node_modules/three/examples/jsm/controls/OrbitControls.js "$dest/three/addons/controls/"
cp node_modules/three/LICENSE "$dest/three/LICENSE"
cp node_modules/htmx.org/LICENSE "$dest/htmx/LICENSE"
node -e '
const lock = require("./package-lock.json");
const out = {};
for (const name of ["htmx.org", "three"]) out[name] = lock.packages["node_modules/" + name].version;
console.log(JSON.stringify(out, null, 2));
' > "$dest/versions.json"
echo "vendored: $(tr -d '\n ' < "$dest/versions.json")"
