// Small SVG charts for the console: a line chart and a grouped bar chart.
// Each returns an <svg role="img"> whose <title> states the data in words,
// so a screen reader gets what the picture shows.

const NS = 'http://www.w3.org/2000/svg';
const W = 420, H = 200, PAD = { l: 44, r: 10, t: 10, b: 34 };

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function frame(label) {
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  svg.append(el('title', {}, label));
  return svg;
}

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function yAxis(svg, max, fmt) {
  const ih = H - PAD.t - PAD.b;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = PAD.t + ih - (ih * i) / 4;
    svg.append(el('line', { class: 'axis', x1: PAD.l, x2: W - PAD.r, y1: y, y2: y }));
    svg.append(el('text', { x: PAD.l - 4, y: y + 4, 'text-anchor': 'end' }, fmt(v)));
  }
}

const count = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

// lineChart draws series of [x, y] points (x in milliseconds).
export function lineChart({ label, series, yFormat = count, xFormat = (x) => new Date(x).toISOString().slice(11, 19) }) {
  const svg = frame(label + ': ' + series.map((s) => `${s.name} ${s.points.length ? s.points[s.points.length - 1][1] : 0}`).join(', '));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data yet'));
    return svg;
  }
  const x0 = Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(...all.map((p) => p[0]), x0 + 1);
  const max = niceMax(Math.max(...all.map((p) => p[1])));
  yAxis(svg, max, yFormat);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const sx = (x) => PAD.l + ((x - x0) / (x1 - x0)) * iw;
  const sy = (y) => PAD.t + ih - (y / max) * ih;
  svg.append(el('text', { x: PAD.l, y: H - 12, 'text-anchor': 'start' }, xFormat(x0)));
  svg.append(el('text', { x: W - PAD.r, y: H - 12, 'text-anchor': 'end' }, xFormat(x1)));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
    svg.append(el('path', { class: `line s${i + 1}`, d }));
    const last = s.points[s.points.length - 1];
    svg.append(el('circle', { class: `s${i + 1}`, cx: sx(last[0]), cy: sy(last[1]), r: 3 }));
  });
  return svg;
}

// barChart draws grouped bars: one group per category, one bar per series.
export function barChart({ label, categories, series, yFormat = count }) {
  const words = categories.map((c, i) => `${c || '(none)'}: ` + series.map((s) => `${s.name} ${yFormat(s.values[i])}`).join(', '));
  const svg = frame(label + (words.length ? '. ' + words.join('; ') : ''));
  if (categories.length === 0 || series.every((s) => s.values.every((v) => !v))) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no data yet'));
    return svg;
  }
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  yAxis(svg, max, yFormat);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const gw = iw / categories.length;
  const bw = Math.max(2, (gw * 0.8) / series.length);
  categories.forEach((c, i) => {
    const gx = PAD.l + i * gw + gw * 0.1;
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      const h = (v / max) * ih;
      const bar = el('rect', { class: `s${j + 1}`, x: gx + j * bw, y: PAD.t + ih - h, width: bw - 1, height: Math.max(h, 0) });
      bar.append(el('title', {}, `${c || '(none)'} · ${s.name}: ${yFormat(v)}`));
      svg.append(bar);
    });
    const name = String(c || '(none)');
    svg.append(el('text', { x: gx + (gw * 0.8) / 2, y: H - 18, 'text-anchor': 'middle' }, name.length > 12 ? name.slice(0, 11) + '…' : name));
  });
  return svg;
}
