// npm test's first step: the browser test drives Debian's chromium at /usr/bin/chromium (never a
// downloaded browser). On a fresh machine without it, install it with apt-get (as root, or
// through sudo when that needs no password); otherwise say in one line how to, and stop.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  const root = process.getuid?.() === 0;
  const sudo = !root && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  if (!root && !sudo) {
    process.stderr.write(`npm test: the browser test needs ${CHROMIUM}; install it with: sudo apt-get install -y chromium\n`);
    process.exit(1);
  }
  const run = (args) => execFileSync(root ? args[0] : 'sudo', root ? args.slice(1) : args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  process.stderr.write(`npm test: ${CHROMIUM} is missing; installing Debian's chromium with apt-get\n`);
  run(['apt-get', 'update']);
  run(['apt-get', 'install', '-y', '--no-install-recommends', 'chromium']);
  if (!existsSync(CHROMIUM)) {
    process.stderr.write(`npm test: apt-get installed chromium, but ${CHROMIUM} is still missing\n`);
    process.exit(1);
  }
}
