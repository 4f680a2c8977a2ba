// What browser.mjs and console.mjs share: a hard time bound on the whole run, and Debian's
// Chromium started headless with the flags this machine needs (no background networking).
import { chromium } from 'playwright-core';

// Ends the process with {error, console} on stdout once timeoutMs have passed.
export function hardStop(timeoutMs, consoleLines) {
  return setTimeout(() => {
    const line = JSON.stringify({ error: 'browser run timed out', console: consoleLines }) + '\n';
    process.stdout.write(line, () => process.exit(1));
  }, timeoutMs);
}

// Launches spec.chromium headless, bounded by spec.timeoutMs.
export function launch(spec) {
  return chromium.launch({
    executablePath: spec.chromium,
    headless: true,
    timeout: spec.timeoutMs,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--headless',
    ],
  });
}
