/**
 * Writes openapi.yaml at the repository root from the app's route schemas
 * (`npm run openapi`). test/openapi.test.ts fails when the committed file is stale.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderOpenApiYaml } from '../src/openapi-document.js';

const target = fileURLToPath(new URL('../openapi.yaml', import.meta.url));
await writeFile(target, await renderOpenApiYaml());
console.log(`wrote ${target}`);
