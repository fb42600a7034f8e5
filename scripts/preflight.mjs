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
const missing = tools.filter((tool) => !found(tool));
if (missing.length > 0) {
  console.log(`preflight: ${missing.join(', ')} not found; running scripts/setup.sh`);
  run('bash', [join(root, 'scripts', 'setup.sh')]);
}
