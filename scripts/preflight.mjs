// Runs before `npm start` and `npm test` (prestart/pretest), so a fresh clone needs no
// other command: installs the npm dependencies when node_modules is missing, and the system
// tools (scripts/setup.sh) when one of them is missing. Silent when everything is there.
// Plain JavaScript: it must run before tsx is installed.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// nats-server is in /usr/sbin on Debian, which a user's PATH may lack.
const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin'].filter(Boolean);
const found = (tool) =>
  tool.includes('/') ? executable(tool) : dirs.some((dir) => executable(join(dir, tool)));

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  console.log('preflight: node_modules is missing; installing the npm dependencies');
  run('npm', [existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}

const tools = ['ffmpeg', 'ffprobe', process.env.YTDLP_PATH || 'yt-dlp', 'nats-server', 'redis-server'];
// The web console's browser tests drive Debian's chromium; `npm start` does not need it.
if (process.env.npm_lifecycle_event === 'pretest')
  tools.push(process.env.CHROMIUM_PATH || '/usr/bin/chromium');
const missing = tools.filter((tool) => !found(tool));
if (missing.length > 0) {
  console.log(`preflight: ${missing.join(', ')} not found; running scripts/setup.sh`);
  run('bash', [join(root, 'scripts', 'setup.sh')]);
}

// YouTube changes often and an old yt-dlp fails there (Debian bookworm ships 2023.03.04):
// say so before the stack starts. Tests only fetch from a local server, so `npm test` skips this.
if (process.env.npm_lifecycle_event === 'prestart') {
  const ytdlp = process.env.YTDLP_PATH || 'yt-dlp';
  const version = spawnSync(ytdlp, ['--version'], { encoding: 'utf8', timeout: 15_000 }).stdout?.trim() ?? '';
  const match = /^(\d{4})\.(\d{2})\.(\d{2})/.exec(version);
  if (match) {
    const days = Math.floor((Date.now() - Date.UTC(+match[1], +match[2] - 1, +match[3])) / 86_400_000);
    if (days > 180) {
      console.log(
        `preflight: yt-dlp ${version} is ${days} days old and may fail on YouTube; run \`npm run setup -- --upgrade\` or set YTDLP_PATH to a current one`,
      );
    }
  }
}
