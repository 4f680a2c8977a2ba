// The console's pictures, drawn as plain SVG (no library): a line chart of messages in/out per
// second and depth over the last statistics samples (for the broker and for one destination:
// one function), and a latency histogram with its buckets' bounds written under the bars.
// Text goes in through textContent; classes style everything (console.css), as the page's
// Content-Security-Policy allows no inline style.

export const integer = new Intl.NumberFormat('en-US');
export const decimal = new Intl.NumberFormat('en-US',
  { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const short = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

/** A new element of ``svg``'s kind (its namespace), with ``attributes`` and ``text``. */
function svgElement(svg, tag, attributes, text) {
  const made = document.createElementNS(svg.namespaceURI, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

/** A duration in words: 250 µs, 2.5 ms, 10 s. */
export function seconds(value) {
  if (value < 0.001) return `${short.format(value * 1e6)} µs`;
  if (value < 1) return `${short.format(value * 1000)} ms`;
  return `${short.format(value)} s`;
}

// -- messages in/out per second and depth -----------------------------------------------------

const RATES_WIDTH = 600;
const RATES_HEIGHT = 120;

function line(svg, values, most, className) {
  const step = values.length > 1 ? RATES_WIDTH / (values.length - 1) : 0;
  const points = values.map(
    (v, i) => `${(i * step).toFixed(1)},${(RATES_HEIGHT - (v / most) * RATES_HEIGHT).toFixed(1)}`);
  return svgElement(svg, 'polyline', { points: points.join(' '), class: className });
}

/**
 * Draws ``samples`` ({in, out, depth}, oldest first) into ``svg`` (viewBox 0 0 600 120) on one
 * scale from 0 to the largest value shown, and says the scale and the latest values in
 * ``caption``. ``svg.dataset.samples`` is how many samples are drawn.
 */
export function drawRates(svg, caption, samples) {
  svg.dataset.samples = String(samples.length);
  if (samples.length === 0) {
    svg.replaceChildren();
    caption.textContent = 'messages in/out per second and depth: waiting for samples…';
    return;
  }
  const most = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out, s.depth)));
  svg.replaceChildren(
    line(svg, samples.map((s) => s.in), most, 'series-in'),
    line(svg, samples.map((s) => s.out), most, 'series-out'),
    line(svg, samples.map((s) => s.depth), most, 'series-depth'),
  );
  const last = samples[samples.length - 1];
  caption.textContent = `last ${samples.length} samples (in: blue, out:`
    + ` green, depth: dashed red), scale 0 to`
    + ` ${integer.format(most)}; now: in ${decimal.format(last.in)}/s,`
    + ` out ${decimal.format(last.out)}/s, depth ${integer.format(last.depth)}`;
}

// -- latency histograms -----------------------------------------------------------------------

const BARS_WIDTH = 600;
const BARS_BASE = 122; // where bars stand; their bounds are written below
const BARS_TOP = 16; // room for the count above the tallest bar
/** At least this many buckets are shown, around those that hold something. */
const MIN_BUCKETS = 8;
/** Beyond this many buckets shown, every other bound is written. */
const ALL_LABELS_UP_TO = 12;

/** The text under bucket ``index``: its upper bound, or "> the last bound". */
function bucketLabel(index, bounds) {
  return index < bounds.length ? `≤ ${seconds(bounds[index])}`
    : `> ${seconds(bounds[bounds.length - 1])}`;
}

/** The buckets to show: from the first to the last that holds something, widened. */
function shownRange(counts) {
  let first = counts.findIndex((c) => c > 0);
  let last = counts.length - 1 - [...counts].reverse().findIndex((c) => c > 0);
  while (last - first + 1 < Math.min(MIN_BUCKETS, counts.length)) {
    if (last < counts.length - 1) last += 1;
    else first -= 1;
  }
  return [first, last];
}

/** One bucket's bar (``share`` of the tallest), its count above, its bound below. */
function bucket(svg, left, slot, share, count, label, labelled) {
  const middle = (left + slot / 2).toFixed(1);
  const height = share * (BARS_BASE - BARS_TOP);
  const bar = svgElement(svg, 'rect', { x: (left + slot * 0.15).toFixed(1),
    y: (BARS_BASE - height).toFixed(1), width: (slot * 0.7).toFixed(1),
    height: height.toFixed(1), class: 'bar' });
  bar.append(svgElement(svg, 'title', {}, `${label}: ${integer.format(count)}`));
  const made = [bar];
  if (count > 0) {
    made.push(svgElement(svg, 'text',
      { x: middle, y: (BARS_BASE - height - 4).toFixed(1), class: 'count' },
      integer.format(count)));
  }
  if (labelled) {
    made.push(svgElement(svg, 'text', { x: middle, y: BARS_BASE + 16, class: 'bound' }, label));
  }
  return made;
}

/**
 * Draws ``histogram`` (a destination's ``latency.*`` from the snapshot: counts per bucket,
 * not cumulative; null before any sample) as bars, each bucket's upper bound (``bounds``, in
 * seconds; the last bucket has none) written under it; ``caption`` gives the count and the
 * quantiles. ``svg.dataset.bars`` is how many bars hold something.
 */
export function drawHistogram(svg, caption, histogram, bounds, what) {
  if (!histogram || !histogram.count) {
    svg.replaceChildren();
    svg.dataset.bars = '0';
    caption.textContent = `${what}: no message timed yet (the broker times one in 16)`;
    return;
  }
  const [first, last] = shownRange(histogram.counts);
  const shown = histogram.counts.slice(first, last + 1);
  const most = Math.max(...shown);
  const slot = BARS_WIDTH / shown.length;
  const drawn = [svgElement(svg, 'line',
    { x1: 0, y1: BARS_BASE, x2: BARS_WIDTH, y2: BARS_BASE, class: 'axis' })];
  shown.forEach((count, i) => {
    const labelled = shown.length <= ALL_LABELS_UP_TO || i % 2 === 0;
    drawn.push(...bucket(svg, i * slot, slot, count / most, count,
      bucketLabel(first + i, bounds), labelled));
  });
  svg.replaceChildren(...drawn);
  svg.dataset.bars = String(shown.filter((c) => c > 0).length);
  const h = histogram;
  caption.textContent = `${what}: ${integer.format(h.count)} timed`
    + ` message${h.count === 1 ? '' : 's'}; p50 ≤ ${seconds(h.p50_s)},`
    + ` p90 ≤ ${seconds(h.p90_s)}, p99 ≤ ${seconds(h.p99_s)}, longest ${seconds(h.max_s)}`;
}
