// Spreading an array into a call — f(...xs), xs.push(...ys), Math.min(...xs) — puts every element
// on the stack, and past ~120,000 elements V8 throws "Maximum call stack size exceeded" (issue
// 19: a 125,000-iteration loss plot, a 125,000-token chat message). The project's code uses
// loops instead, everywhere, so that no spread can meet a large array later. This test finds any
// spread argument in src/ and web/ with the TypeScript parser (rest parameters are fine).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { projectRoot } from './refdata.js';

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (/\.ts$/.test(name) && !name.endsWith('.d.ts')) yield path;
  }
}

test('no spread arguments in calls (src/, web/): loops instead, so no large array can overflow the stack', () => {
  const found: string[] = [];
  let files = 0;
  for (const root of ['src', 'web']) {
    for (const file of sources(join(projectRoot, root))) {
      files++;
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node): void => {
        if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && node.arguments !== undefined) {
          for (const arg of node.arguments) {
            if (!ts.isSpreadElement(arg)) continue;
            const { line } = source.getLineAndCharacterOfPosition(arg.getStart());
            found.push(`${relative(projectRoot, file)}:${line + 1}: ${node.getText().replace(/\s+/g, ' ').slice(0, 100)}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
  }
  assert.ok(files > 50, `only ${files} files scanned`);
  assert.deepEqual(found, [], `spread arguments (use a loop: for (const x of xs) out.push(x); or reduce for min/max):\n${found.join('\n')}`);
});
