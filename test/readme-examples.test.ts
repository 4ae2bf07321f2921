/**
 * Every `sh` example in README.md, run as written, top to bottom, in one bash session against the
 * real app listening on 127.0.0.1 — as a new user would paste them after `npm start`. Each HTTP
 * request they make must be answered 2xx, or with the status a comment on the command promises
 * (`# 302: now away`), and a `# → {…}` line under a command is the JSON its answer must contain (`# → text`, other than
 * JSON: text the answer must contain, e.g. the numbers a Dial Whom callback answers). So the README's examples cannot rot.
 *
 * Two things differ from a user's terminal, none in the commands themselves:
 * - `EXO` is set again after the README's own `export` line, to the port the test listens on (a
 *   fixed 3000 may be taken on a shared machine); `.data/admin-api-key` holds the test's admin key;
 * - `curl` is a bash function that runs the real curl and notes each answer's HTTP status.
 * Nothing waits for the rules to reload: an admin write is answered once its instance has them.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ADMIN_KEY, buildTestApp } from './helper.js';

interface Example {
  command: string;
  expect: unknown[];
  line: number;
}

/** The README's `sh` blocks (also those indented in a list), dedented, with the line each starts on. */
export function shBlocks(markdown: string): Array<{ code: string; line: number }> {
  const blocks: Array<{ code: string; line: number }> = [];
  for (const m of markdown.matchAll(/^( *)```sh\n([\s\S]*?)^\1```/gm)) {
    const indent = m[1]!.length;
    const code = m[2]!
      .split('\n')
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join('\n');
    blocks.push({ code, line: markdown.slice(0, m.index).split('\n').length + 1 });
  }
  return blocks;
}

/**
 * A line's shell state after it: whether a single or double quote is still open, and how many
 * `for`/`while` loops it opens (`do`) less those it closes (`done`). A `#` outside quotes after a
 * space starts a comment, whose apostrophes (`today's`) count for nothing.
 */
function scan(text: string, open: { single: boolean; double: boolean }): number {
  let loops = 0;
  let word = '';
  const endWord = () => {
    if (word === 'do') loops++;
    if (word === 'done') loops--;
    word = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (open.single) {
      if (c === "'") open.single = false;
    } else if (open.double) {
      if (c === '"' && text[i - 1] !== '\\') open.double = false;
    } else if (c === "'") open.single = true;
    else if (c === '"') open.double = true;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) break;
    else if (/[a-z]/.test(c)) {
      word += c;
      continue;
    }
    endWord();
  }
  endWord();
  return loops;
}

/**
 * A block's commands: a command runs on while a quote or a loop is open or a line ends with `\`;
 * a comment line `# → {json}` (or `# → text`) after a command is what its answer must contain.
 */
export function commandsOf(block: { code: string; line: number }): Example[] {
  const out: Example[] = [];
  let pending: string[] = [];
  const open = { single: false, double: false };
  let loops = 0;
  block.code.split('\n').forEach((text, i) => {
    const expectation = /^\s*# → (.+?)\s*$/.exec(text);
    if (pending.length === 0 && expectation) {
      out.at(-1)?.expect.push(expectation[1]!.startsWith('{') ? JSON.parse(expectation[1]!) : expectation[1]!);
      return;
    }
    if (pending.length === 0 && (text.trim() === '' || text.trim().startsWith('#'))) return;
    pending.push(text);
    loops += scan(text, open);
    if (!open.single && !open.double && loops === 0 && !text.endsWith('\\')) {
      out.push({ command: pending.join('\n'), expect: [], line: block.line + i - pending.length + 1 });
      pending = [];
    }
  });
  if (pending.length > 0) throw new Error(`unterminated command at README line ${block.line}: ${pending.join('\n')}`);
  return out;
}

/** One bash process; each command's stdout comes back with the statuses of the requests it made. */
function bashSession(cwd: string, statusLog: string) {
  const bash = spawn('bash', ['--noprofile', '--norc'], { cwd, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HOME: cwd } });
  let stdout = '';
  let stderr = '';
  let waiting: (() => void) | null = null;
  bash.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    if (stdout.includes('\n::done::') && waiting) waiting();
  });
  bash.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  bash.stdin.write(
    [
      'shopt -s expand_aliases',
      `curl() { local out; out=$(command curl "$@" -w '\\n%{http_code}'); local rc=$?; printf '%s' "\${out%$'\\n'*}"; echo "\${out##*$'\\n'}" >> ${JSON.stringify(statusLog)}; return $rc; }`,
      '',
    ].join('\n'),
  );
  return {
    async run(command: string): Promise<{ out: string; err: string; statuses: number[] }> {
      await writeFile(statusLog, '');
      stdout = '';
      stderr = '';
      const done = new Promise<void>((resolve) => (waiting = resolve));
      bash.stdin.write(`${command}\necho; echo "::done::"\n`);
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`no end after 30 s: ${command}`)), 30_000))]);
      waiting = null;
      const statuses = (await readFile(statusLog, 'utf8')).split('\n').filter(Boolean).map(Number);
      return { out: stdout.slice(0, stdout.lastIndexOf('\n::done::')), err: stderr, statuses };
    },
    close: () => bash.kill(),
  };
}

t.test('every README example runs as written against a started service', async (t) => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const blocks = shBlocks(readme);
  // Blocks that install, start or operate the service (npm, systemd, Docker): they need root, a
  // Docker engine or a second service, and are not requests to it. Any other block is run.
  const deployment = blocks.filter((b) => commandsOf(b).every((c) => /^(npm|useradd|git|sudo|install|cp|journalctl|systemctl|docker)\b/.test(c.command)));
  t.ok(
    deployment.some((b) => /^npm ci/m.test(b.code)),
    'the "two commands" block is recognised as one',
  );
  for (const b of deployment) {
    t.test(`README line ${b.line}`, { skip: `install/operations commands (${b.code.trim().split(/\s+/)[0]} …), not requests to the service` }, async () => {});
  }
  const examples = blocks.filter((b) => !deployment.includes(b)).flatMap(commandsOf);
  t.ok(examples.length >= 30, `${examples.length} commands`);

  const ctx = await buildTestApp(t);
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const cwd = await mkdtemp(path.join(tmpdir(), 'exoroute-readme-'));
  t.teardown(() => rm(cwd, { recursive: true, force: true }));
  await mkdir(path.join(cwd, '.data'));
  await writeFile(path.join(cwd, '.data', 'admin-api-key'), `${ADMIN_KEY}\n`);
  const bash = bashSession(cwd, path.join(cwd, 'statuses'));
  t.teardown(() => bash.close());

  // Twice: *Starting over* says that, with what *Trying it* set undone, the examples run again as shown.
  for (const [run, example] of [...examples.map((e) => [1, e] as const), ...examples.map((e) => [2, e] as const)]) {
    const where = `${run === 2 ? 'second run, ' : ''}README line ${example.line}: ${example.command.split('\n')[0]}`;
    const { out, err, statuses } = await bash.run(example.command);
    if (/^export EXO=/.test(example.command)) await bash.run(`export EXO=${base}`);
    const isRequest = /^(api|curl) /.test(example.command);
    if (isRequest) t.ok(statuses.length > 0, `${where}: made a request`, { err });
    // A comment that starts with a status (`# 302: now away`) is the answer the README promises.
    const promised = /#\s*([1-5]\d\d)\b[^\n]*$/.exec(example.command)?.[1];
    if (promised) t.same(statuses.slice(-1), [Number(promised)], `${where}: answered ${promised}, as the README says`, { out: out.slice(0, 500), err });
    else
      t.same(
        statuses.filter((s) => s < 200 || s > 299),
        [],
        `${where}: answered 2xx`,
        { out: out.slice(0, 500), err },
      );
    for (const expected of example.expect) {
      if (typeof expected === 'string') {
        t.match(out, expected, `${where}: the answer the README shows`);
        continue;
      }
      let body: unknown;
      try {
        body = JSON.parse(out.trim());
      } catch {
        body = out;
      }
      t.match(body, expected, `${where}: the answer the README shows`);
    }
  }
  const csv = await readFile(path.join(cwd, 'cdrs.csv'), 'utf8');
  t.match(csv.split('\n')[0], /callSid|call_sid/i, 'the CSV export was written with its header row');
});

t.test('the command splitter keeps a quoted JSON body spanning lines as one command', async (t) => {
  const cmds = commandsOf({ code: 'api -X POST x -d \'{\n  "a":1}\'\n# → {"ok":true}\napi y   # a comment\ncurl z\n# → +919812345690\n', line: 10 });
  t.same(
    cmds.map((c) => [c.command, c.expect, c.line]),
    [
      ['api -X POST x -d \'{\n  "a":1}\'', [{ ok: true }], 10],
      ['api y   # a comment', [], 13],
      ['curl z', ['+919812345690'], 14],
    ],
    'a `# → ` line that is not JSON is text the answer must contain',
  );
});
