// Opens one page in Debian's headless Chromium through playwright-core, for
// tests/interop/test_stompjs.py.
//
// Usage: node browser.mjs '<JSON spec>' with spec = {url, screenshot, chromium, timeoutMs,
// waitFor?: a window property to wait for, waitText?: lines the page must show}. Prints one JSON
// line {result, text, console} and exits 0, or {error, console} and exits 1. Bounded throughout.
import { hardStop, launch } from './launch.mjs';

const spec = JSON.parse(process.argv[2]);
const consoleLines = [];
const stopper = hardStop(spec.timeoutMs, consoleLines);

const browser = await launch(spec);
let code = 0;
let output;
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
  const wait = { timeout: spec.timeoutMs / 2 };
  await page.goto(spec.url, wait);
  if (spec.waitFor) {
    await page.waitForFunction((name) => window[name] !== undefined, spec.waitFor, wait);
  }
  if (spec.waitText) {
    await page.waitForFunction(
      (lines) => lines.every((line) => document.body.innerText.includes(line)), spec.waitText, wait);
  }
  const result = spec.waitFor ? await page.evaluate((name) => window[name], spec.waitFor) : null;
  const text = await page.evaluate(() => document.body.innerText);
  await page.screenshot({ path: spec.screenshot });
  output = { result, text, console: consoleLines };
} catch (error) {
  code = 1;
  output = { error: String(error), console: consoleLines };
} finally {
  await browser.close();
}
clearTimeout(stopper);
process.stdout.write(JSON.stringify(output) + '\n', () => process.exit(code));
