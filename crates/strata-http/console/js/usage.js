// A customer's usage by day (`GET /v1/organizations/:id/credits/usage?granularity=day`) as a uPlot
// bar chart, with the same numbers in a table for keyboards and screen readers.

import * as api from './api.js';
import { credits, errorBox, h, replace, table } from './dom.js';
import uPlot from '../vendor/uplot/uPlot.esm.js';

const DAYS = 30;
const SERIES = [
  ['used', 'Used', '#c2410c'],
  ['allocated', 'Allocated', '#1d4ed8'],
  ['refilled', 'Refilled', '#15803d'],
  ['refunded', 'Refunded', '#7c3aed'],
];

/** The first instant of the UTC day `days` days before today, as the API wants it. */
function daysAgo(days) {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() - days);
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** `{node, reload}`: the section, and a function that fetches the report and redraws. */
export function usageSection(orgId) {
  const node = h('section', { class: 'card wide', 'aria-labelledby': 'usage-h' });
  let plot = null;
  let observer = null;

  async function reload() {
    const title = h('h2', { id: 'usage-h' }, `Usage by day (last ${DAYS} days, UTC)`);
    let report;
    try {
      report = await api.get(`/v1/organizations/${encodeURIComponent(orgId)}/credits/usage`, {
        query: { granularity: 'day', since: daysAgo(DAYS - 1) },
      });
    } catch (e) {
      replace(node, title, errorBox(e));
      return;
    }
    if (plot) plot.destroy();
    if (observer) observer.disconnect();
    const chart = h('div', { class: 'chart', role: 'img', 'aria-label': `Credits used, allocated, refilled and refunded per day for the last ${DAYS} days` });
    const totals = Object.fromEntries(SERIES.map(([k]) => [k, report.items.reduce((s, b) => s + (b[k] || 0), 0)]));
    const rows = report.items.filter((b) => SERIES.some(([k]) => b[k])).map((b) => [b.start.slice(0, 10), ...SERIES.map(([k]) => credits(b[k]))]);
    replace(
      node,
      title,
      h('p', { class: 'usage-totals' }, SERIES.map(([k, label]) => `${label} ${credits(totals[k])}`).join(' · ')),
      chart,
      h('details', {}, h('summary', {}, 'The numbers (days with activity)'), table('Usage by day', ['Day', ...SERIES.map(([, l]) => l)], rows, 'No activity in this window.')),
    );
    const xs = report.items.map((b) => Date.parse(b.start) / 1000);
    const data = [xs, ...SERIES.map(([k]) => report.items.map((b) => b[k] || 0))];
    const width = () => Math.max(280, chart.clientWidth || 600);
    plot = new uPlot(
      {
        width: width(),
        height: 220,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        scales: { x: { time: true } },
        axes: [{}, { values: (_, ticks) => ticks.map((t) => credits(t)) }],
        series: [{}, ...SERIES.map(([, label, stroke]) => ({ label, stroke, width: 2, points: { show: true, size: 5 } }))],
      },
      data,
      chart,
    );
    if (typeof ResizeObserver !== 'undefined') {
      observer = new ResizeObserver(() => plot && plot.setSize({ width: width(), height: 220 }));
      observer.observe(chart);
    }
  }

  return { node, reload };
}
