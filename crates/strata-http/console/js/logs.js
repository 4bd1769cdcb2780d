// The audit log (`GET /v1/audit-log`) and the event log (`GET /v1/events`) with their filters,
// newest first, paged by cursor; `?org=<childId>` reads a child's.

import * as api from './api.js';
import { errorBox, field, h, json, replace, table, utcFromInput, when } from './dom.js';
import { EVENT_TYPES, actingAs } from './webhooks.js';

/**
 * A filtered, paged log page. `inputs`: [label, element, query parameter]; `path`: the list route;
 * `toRow(item)` → cells.
 */
async function logPage(main, { title, page, org, inputs, path, headers, toRow, limit }) {
  const listSlot = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });
  let cursors = [null];
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': `Filter the ${title.toLowerCase()}` }, inputs.map(([label, el]) => field(label, el)), h('button', { type: 'submit' }, 'Apply'));

  async function load() {
    const query = { limit, cursor: cursors[cursors.length - 1] };
    for (const [, el, name] of inputs) query[name] = el.type === 'datetime-local' ? utcFromInput(el.value) : el.value.trim();
    let data;
    try {
      data = await api.get(path, { org, query });
    } catch (e) {
      replace(listSlot, errorBox(e));
      replace(pager);
      return;
    }
    replace(listSlot, table(title, headers, data.items.map(toRow), 'No entries match.'));
    replace(
      pager,
      h('button', { type: 'button', disabled: cursors.length === 1, onClick: () => { cursors.pop(); load(); } }, 'Newer'),
      ' ',
      h('button', { type: 'button', disabled: !data.nextCursor, onClick: () => { cursors.push(data.nextCursor); load(); } }, 'Older'),
    );
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    cursors = [null];
    load();
  });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, org ? `${title} of a customer` : title)), actingAs(page, org), form, listSlot, pager);
  await load();
}

const text = (name) => h('input', { name, autocomplete: 'off', spellcheck: 'false' });
const time = (name) => h('input', { name, type: 'datetime-local', step: '1' });
const payload = (data) => h('details', {}, h('summary', {}, 'data'), json(data));

export function renderAudit(main, ctx) {
  return logPage(main, {
    title: 'Audit log',
    page: 'audit',
    org: ctx.params.get('org'),
    path: '/v1/audit-log',
    limit: 50,
    inputs: [
      ['Event type', text('eventType'), 'eventType'],
      ['Project id', text('projectId'), 'projectId'],
      ['API key id', text('apiKeyId'), 'apiKeyId'],
      ['Since (UTC)', time('since'), 'since'],
      ['Until (UTC)', time('until'), 'until'],
    ],
    headers: ['When', 'Event', 'Actor', 'API key', 'Project', 'Request id', 'Data'],
    toRow: (a) => [when(a.occurredAt), a.eventType, a.actor, a.apiKeyId || '—', a.projectId || '—', a.requestId || '—', payload(a.data)],
  });
}

export function renderEvents(main, ctx) {
  const type = h('select', { name: 'type' }, ['', ...EVENT_TYPES].map((t) => h('option', { value: t }, t || 'every type')));
  return logPage(main, {
    title: 'Events',
    page: 'events',
    org: ctx.params.get('org'),
    path: '/v1/events',
    limit: 25,
    inputs: [
      ['Type', type, 'type'],
      ['Since (UTC)', time('since'), 'since'],
      ['Until (UTC)', time('until'), 'until'],
    ],
    headers: ['When', 'Type', 'Id', 'Organization', 'Project', 'Data'],
    toRow: (e) => [when(e.createdAt), e.type, h('code', {}, e.id), e.organizationId, e.projectId || '—', payload(e.data)],
  });
}
