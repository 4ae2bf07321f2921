/**
 * The docs' pointers lead somewhere: every relative link in the repository's Markdown files names
 * a file that exists (and a heading of it, for `#anchor`), and every README section a file of the
 * repository points a reader to (the word README, then the section's name in double quotes) is a
 * heading of README.md or the bold lead-in of one of its paragraphs (`**Rotating the callback secret.**`).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const files = execFileSync('git', ['ls-files'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && existsSync(f));
const markdown = files.filter((f) => f.endsWith('.md'));

/** GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
const headings = (file: string) => [...readFileSync(file, 'utf8').matchAll(/^#{1,6}\s+(.*)$/gm)].map((m) => m[1]!.replace(/`/g, ''));

t.test('every relative link in a Markdown file resolves to a file, and its #anchor to a heading there', async (t) => {
  let links = 0;
  for (const file of markdown) {
    const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target!)) continue;
      links++;
      const [p, hash] = target!.split('#');
      const resolved = p ? path.join(path.dirname(file), p) : file;
      t.ok(existsSync(resolved), `${file}: ${target} names ${resolved}, which exists`);
      if (hash && existsSync(resolved) && resolved.endsWith('.md')) {
        t.ok(headings(resolved).map(anchor).includes(hash), `${file}: #${hash} is a heading of ${resolved}`);
      }
    }
  }
  t.ok(links >= 5, `${links} relative links checked`);
});

t.test('every README section a file points to by name is a heading of README.md or the bold lead-in of a paragraph', async (t) => {
  const readme = readFileSync('README.md', 'utf8');
  const targets = [...headings('README.md'), ...[...readme.matchAll(/\*\*([^*\n]+?)\.?\*\*/g)].map((m) => m[1]!.replace(/`/g, ''))].map((s) =>
    s.trim().toLowerCase(),
  );
  let refs = 0;
  for (const file of files) {
    if (file.startsWith('src/generated/') || /\.(json|lock|png|svg)$/.test(file)) continue;
    // A comment's reference may wrap onto the next comment line.
    const text = readFileSync(file, 'utf8').replace(/\n\s*(#|\/\/|\*)\s*/g, ' ');
    for (const [, section] of text.matchAll(/README,? "([^"]+)"/g)) {
      refs++;
      const named = section!
        .replace(/`/g, '')
        .replace(/(…|\.\.\.)$/, '')
        .trim()
        .toLowerCase();
      t.ok(
        targets.some((h) => h.startsWith(named)),
        `${file}: README section ${section} is in README.md`,
      );
    }
  }
  t.ok(refs >= 5, `${refs} references checked`);
});

t.test('every repository file or folder a doc names in backticks exists', async (t) => {
  // `src/store/cdrs.ts`, `deploy/Caddyfile`, and in a folder's README its own files (`answer.ts`, `../decide.ts`);
  // not DATA_DIR's files, a build's dist/, or a content type (`text/plain`).
  let named = 0;
  // bench/HISTORY.md describes the code as it was at each of its commits, files since moved included.
  for (const file of markdown.filter((f) => f !== 'bench/HISTORY.md')) {
    const text = readFileSync(file, 'utf8');
    const inFolder = path.dirname(file) !== '.' && !file.startsWith('docs/');
    for (const [, p] of text.matchAll(/`((?:\.\.?\/)*[\w.-]+(?:\/[\w.-]+)*\/?)`/g)) {
      const repoPath = /^(src|test|prisma|deploy|docs|bench|scripts|\.ci)\//.test(p!);
      const folderFile = inFolder && /\.(ts|sql|md)$/.test(p!);
      if (!repoPath && !folderFile) continue;
      named++;
      t.ok(existsSync(p!) || existsSync(path.join(path.dirname(file), p!)), `${file}: ${p} exists`);
    }
  }
  t.ok(named > 50, `${named} paths checked`);
});

t.test("README's Layout names every top-level folder and everything directly under src/", async (t) => {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('\n## Layout\n');
  const layout = readme.slice(start, readme.indexOf('\n## ', start + 1));
  t.ok(start > 0, 'README has a Layout section');
  const top = new Set(files.filter((f) => f.includes('/') && !f.startsWith('.')).map((f) => `${f.split('/')[0]}/`));
  const src = new Set(files.filter((f) => f.startsWith('src/')).map((f) => `src/${f.split('/')[1]}${f.split('/').length > 2 ? '/' : ''}`));
  for (const entry of [...top, ...src]) t.ok(layout.includes(entry), `${entry} is in the Layout`);
});
