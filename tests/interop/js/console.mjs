// Drives one page through a list of steps in Debian's headless Chromium (playwright-core), for
// tests/interop/test_console.py (the broker's web console).
//
// Usage: node console.mjs '<JSON spec>' with spec = {url, chromium, timeoutMs, stepTimeoutMs,
// steps, failureScreenshot?}. Each step is one of
//   {wait: "<JS expression>"}          until it is truthy in the page (bounded by stepTimeoutMs)
//   {fill: "<selector>", value}        type into a field
//   {check: "<selector>"}              tick a checkbox
//   {click: "<selector>"}              click
//   {press: "<key>", on?: "<selector>"} a key (Playwright's names: Enter, Escape, Tab, Space)
//                                      on an element (focused first), else where the focus is
//   {read: "<JS expression>", as}      evaluate, and keep the value under results[as]
//   {screenshot: "<path>"}             the whole page
// Prints one JSON line {results, text, console} and exits 0, or {error, step, text, console}
// (and a screenshot to failureScreenshot) and exits 1.
import { hardStop, launch } from './launch.mjs';

const spec = JSON.parse(process.argv[2]);
const consoleLines = [];
const stopper = hardStop(spec.timeoutMs, consoleLines);

const browser = await launch(spec);
let code = 0;
let output;
let page;
let current = -1;
try {
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => consoleLines.push(`requestfailed: ${request.url()}`));
  const timeout = spec.stepTimeoutMs;
  await page.goto(spec.url, { timeout });
  const results = {};
  // Expressions become functions here: a string would be eval'd in the page, which its
  // Content-Security-Policy forbids (as it should).
  const asFunction = (expression) => new Function(`return (${expression});`);
  for (const [index, step] of spec.steps.entries()) {
    current = index;
    if ('wait' in step) await page.waitForFunction(asFunction(step.wait), undefined, { timeout });
    else if ('fill' in step) await page.fill(step.fill, step.value, { timeout });
    else if ('check' in step) await page.check(step.check, { timeout });
    else if ('click' in step) await page.click(step.click, { timeout });
    else if ('press' in step && step.on) await page.press(step.on, step.press, { timeout });
    else if ('press' in step) await page.keyboard.press(step.press);
    else if ('read' in step) results[step.as] = await page.evaluate(asFunction(step.read));
    else if ('screenshot' in step) await page.screenshot({ path: step.screenshot, fullPage: true });
    else throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
  const text = await page.evaluate(() => document.body.innerText);
  output = { results, text, console: consoleLines };
} catch (error) {
  code = 1;
  let text = null;
  if (page) {
    text = await page.evaluate(() => document.body.innerText).catch(() => null);
    if (spec.failureScreenshot) {
      await page.screenshot({ path: spec.failureScreenshot, fullPage: true }).catch(() => {});
    }
  }
  output = { error: String(error), step: spec.steps[current] ?? null, text, console: consoleLines };
} finally {
  await browser.close();
}
clearTimeout(stopper);
process.stdout.write(JSON.stringify(output) + '\n', () => process.exit(code));
