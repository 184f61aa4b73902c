#!/usr/bin/env node
// Keeps every version in step with the root package.json: the platform packages under npm/ and, when
// present (a packed or published package.json; `napi prepublish` and scripts/pack-local.sh add them),
// the root's optionalDependencies on them. Run by `npm version <x>` (the "version" script), or by hand.
// Exits non-zero with --check when anything is out of step (used by the tests).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const rootPkgPath = path.join(root, 'package.json');
const rootPkg = JSON.parse(fs.readFileSync(rootPkgPath, 'utf8'));
const check = process.argv.includes('--check');
const version = rootPkg.version;
const problems = [];

const npmDir = path.join(root, 'npm');
for (const dir of fs.readdirSync(npmDir)) {
  const pkgPath = path.join(npmDir, dir, 'package.json');
  if (!fs.existsSync(pkgPath)) continue;
  const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'));
  if (pkg.version !== version) {
    problems.push(`${pkg.name} is ${pkg.version}, root is ${version}`);
    pkg.version = version;
    if (!check) fs.writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + '\n');
  }
  if (rootPkg.optionalDependencies && rootPkg.optionalDependencies[pkg.name] !== version) {
    problems.push(`optionalDependencies.${pkg.name} is ${rootPkg.optionalDependencies?.[pkg.name]}, root is ${version}`);
    rootPkg.optionalDependencies = { ...rootPkg.optionalDependencies, [pkg.name]: version };
  }
}
if (!check) fs.writeFileSync(rootPkgPath, JSON.stringify(rootPkg, null, 2) + '\n');
if (problems.length) {
  console.log(problems.join('\n'));
  if (check) process.exit(1);
}
