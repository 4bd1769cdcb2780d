// Webhooks: endpoints (create with the secret shown once, pause and re-enable, rotate the secret,
// send a test, recover after an outage), the delivery log with each delivery's attempts, replay.
// `?org=<childId>` manages a child's endpoints (X-Layers-Organization).

import * as api from './api.js';
import { badge, confirmDialog, errorBox, field, h, modal, notice, replace, secretDialog, table, utcFromInput, when } from './dom.js';

export const EVENT_TYPES = [
  'job.completed', 'job.failed', 'job.canceled', 'content.generated', 'post.scheduled', 'post.published', 'post.failed',
  'post.canceled', 'test.ping', 'organization.created', 'organization.suspended', 'organization.resumed',
  'organization.archived', 'credits.allocated', 'credits.refilled', 'credits.low', 'api_key.created', 'api_key.rotated',
  'api_key.revoked',
];

/** The "acting as" control shared by the webhooks and log pages: your org or a child's id. */
export function actingAs(page, org) {
  const input = h('input', { name: 'org', autocomplete: 'off', spellcheck: 'false', placeholder: 'org_… (empty: your own)', props: { value: org || '' } });
  const form = h('form', { class: 'filters acting', 'aria-label': 'Organization' }, field('Organization (a customer’s id, or empty for your own)', input), h('button', { type: 'submit' }, 'Switch'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    location.hash = v ? `#/${page}?org=${encodeURIComponent(v)}` : `#/${page}`;
  });
  return form;
}

export async function renderWebhooks(main, ctx) {
  const org = ctx.params.get('org') || null;
  const listSlot = h('div', { class: 'endpoints' });
  const deliveriesSlot = h('section', { class: 'card wide deliveries', 'aria-labelledby': 'dlv-h', hidden: true });
  const status = h('select', { name: 'endpointStatus' }, ['', 'active', 'paused', 'auto_paused'].map((s) => h('option', { value: s }, s || 'any status')));
  status.addEventListener('change', () => load());

  async function load() {
    let page;
    try {
      page = await api.get('/v1/webhook-endpoints', { org, query: { limit: 100, status: status.value } });
    } catch (e) {
      replace(listSlot, errorBox(e));
      return;
    }
    if (page.items.length === 0) {
      replace(listSlot, h('p', { class: 'empty' }, 'No endpoints.'));
      return;
    }
    replace(listSlot, page.items.map((ep) => endpointCard(ep)));
  }

  function endpointCard(ep) {
    const slot = h('div');
    const path = `/v1/webhook-endpoints/${encodeURIComponent(ep.id)}`;
    const act = async (fn) => {
      try {
        await fn();
      } catch (e) {
        replace(slot, errorBox(e));
      }
    };
    const setStatus = (s) => act(async () => {
      await api.call('PATCH', path, { org, body: { status: s }, idempotencyKey: api.newIdempotencyKey() });
      await load();
    });
    const rotate = () => act(async () => {
      const r = await api.call('POST', `${path}/rotate-secret`, { org, idempotencyKey: api.newIdempotencyKey() });
      secretDialog('New signing secret', r.signingSecret, r.warning, h('p', {}, `The previous secret also signs until ${when(r.previousSecretExpiresAt)}.`));
    });
    const test = () => act(async () => {
      const r = await api.call('POST', `${path}/test`, { org, body: {}, idempotencyKey: api.newIdempotencyKey() });
      replace(slot, notice(`Test event ${r.eventId} queued as delivery ${r.deliveryId}.`));
    });
    const remove = () => act(async () => {
      if (!(await confirmDialog('Delete endpoint', `Delete the endpoint for ${ep.url}? Its pending deliveries are abandoned.`, 'Delete'))) return;
      await api.call('DELETE', path, { org, idempotencyKey: api.newIdempotencyKey() });
      await load();
    });
    const since = h('input', { type: 'datetime-local', name: 'recoverSince' });
    const recover = h('form', { class: 'filters recover' }, field('Re-send failed deliveries since (UTC)', since), h('button', { type: 'submit' }, 'Recover'));
    recover.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(async () => {
        const r = await api.call('POST', `${path}/recover`, { org, body: { since: utcFromInput(since.value) }, idempotencyKey: api.newIdempotencyKey() });
        replace(slot, notice(`Re-queued ${r.requeued} deliveries.`));
      });
    });
    const autoPaused = ep.status === 'auto_paused';
    return h(
      'article',
      { class: `card endpoint${autoPaused ? ' endpoint-auto-paused' : ''}`, 'aria-label': `Endpoint ${ep.url}` },
      autoPaused
        ? h('p', { class: 'alarm', role: 'note' }, `Auto-paused after ${ep.consecutiveFailureCount} failed deliveries in a row. Nothing is sent until it is re-enabled; then recover what failed.`)
        : null,
      h('h3', {}, h('code', { class: 'endpoint-url' }, ep.url), ' ', badge(ep.status)),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Id'), h('dd', {}, h('code', {}, ep.id)),
        h('dt', {}, 'Scope'), h('dd', {}, ep.scope),
        h('dt', {}, 'Events'), h('dd', {}, ep.events.join(', ')),
        h('dt', {}, 'Description'), h('dd', {}, ep.description || '—'),
        h('dt', {}, 'Last success'), h('dd', {}, when(ep.lastSuccessAt)),
        h('dt', {}, 'Last failure'), h('dd', {}, `${when(ep.lastFailureAt)} (${ep.consecutiveFailureCount} in a row)`),
      ),
      h(
        'div',
        { class: 'actions' },
        ep.status === 'active'
          ? h('button', { type: 'button', onClick: () => setStatus('paused') }, 'Pause')
          : h('button', { type: 'button', class: autoPaused ? 'primary' : null, onClick: () => setStatus('active') }, autoPaused ? 'Re-enable' : 'Activate'),
        h('button', { type: 'button', onClick: rotate }, 'Rotate secret'),
        h('button', { type: 'button', onClick: test }, 'Send test'),
        h('button', { type: 'button', onClick: () => showDeliveries(ep) }, 'Deliveries'),
        h('button', { type: 'button', class: 'danger', onClick: remove }, 'Delete'),
      ),
      recover,
      slot,
    );
  }

  async function showDeliveries(ep, cursors = [null], filter = '') {
    deliveriesSlot.hidden = false;
    const st = h('select', { name: 'deliveryStatus' }, ['', 'pending', 'delivering', 'delivered', 'failed', 'abandoned'].map((s) => h('option', { value: s, props: { selected: s === filter } }, s || 'any status')));
    st.addEventListener('change', () => showDeliveries(ep, [null], st.value));
    const head = [h('h2', { id: 'dlv-h' }, 'Deliveries to ', h('code', {}, ep.url)), h('div', { class: 'filters' }, field('Delivery status', st))];
    let page;
    try {
      page = await api.get(`/v1/webhook-endpoints/${encodeURIComponent(ep.id)}/deliveries`, { org, query: { limit: 25, status: filter, cursor: cursors[cursors.length - 1] } });
    } catch (e) {
      replace(deliveriesSlot, head, errorBox(e));
      return;
    }
    const actSlot = h('div');
    const rows = page.items.map((d) => [
      when(d.createdAt),
      d.eventType,
      badge(d.status),
      String(d.attempts),
      d.lastResponseStatus === null ? '—' : String(d.lastResponseStatus),
      d.lastErrorMessage || '—',
      when(d.nextRetryAt),
      h(
        'span',
        { class: 'row-actions' },
        h('button', { type: 'button', onClick: () => deliveryDetail(d.id, actSlot) }, 'Attempts'),
        h('button', { type: 'button', onClick: () => replay(d.id, actSlot, () => showDeliveries(ep, cursors, filter)) }, 'Replay'),
      ),
    ]);
    const prev = h('button', { type: 'button', disabled: cursors.length === 1, onClick: () => showDeliveries(ep, cursors.slice(0, -1), filter) }, 'Newer');
    const next = h('button', { type: 'button', disabled: !page.nextCursor, onClick: () => showDeliveries(ep, [...cursors, page.nextCursor], filter) }, 'Older');
    replace(
      deliveriesSlot,
      head,
      actSlot,
      table('Deliveries', ['Created', 'Event', 'Status', 'Attempts', 'Last HTTP status', 'Last error', 'Next retry', 'Actions'], rows, 'No deliveries.'),
      h('div', { class: 'pager' }, prev, ' ', next),
    );
    deliveriesSlot.scrollIntoView({ block: 'nearest' });
  }

  async function deliveryDetail(id, slot) {
    try {
      const d = await api.get(`/v1/webhook-deliveries/${encodeURIComponent(id)}`, { org });
      const rows = d.attempts.map((a) => [when(a.attemptedAt), `${a.durationMs} ms`, a.responseStatus === null ? '—' : String(a.responseStatus), a.errorMessage || '—', a.responseBodyExcerpt || '—']);
      modal(`Delivery ${d.id}`, h('div', {}, h('p', {}, `${d.eventType}: `, badge(d.status)), table('Attempts', ['When', 'Took', 'HTTP status', 'Error', 'Response (first KiB)'], rows, 'Not attempted yet.')));
    } catch (e) {
      replace(slot, errorBox(e));
    }
  }

  async function replay(id, slot, after) {
    try {
      const r = await api.call('POST', `/v1/webhook-deliveries/${encodeURIComponent(id)}/replay`, { org, idempotencyKey: api.newIdempotencyKey() });
      await after();
      deliveriesSlot.prepend(notice(`Replayed as delivery ${r.replayDeliveryId}.`));
    } catch (e) {
      replace(slot, errorBox(e));
    }
  }

  replace(
    main,
    h('div', { class: 'page-head' }, h('h1', {}, org ? 'Webhooks of a customer' : 'Webhooks'), h('button', { type: 'button', class: 'primary', onClick: () => createEndpoint(org, load) }, 'New endpoint')),
    actingAs('webhooks', org),
    h('div', { class: 'filters' }, field('Endpoint status', status)),
    listSlot,
    deliveriesSlot,
  );
  await load();
}

function createEndpoint(org, after) {
  let once = new api.FormKey();
  const url = h('input', { name: 'url', type: 'url', required: true, autocomplete: 'off', placeholder: 'https://example.com/hooks/layers' });
  const description = h('input', { name: 'description', maxlength: '500', autocomplete: 'off' });
  const scope = h('select', { name: 'scope' }, h('option', { value: 'own' }, 'this organization'), h('option', { value: 'all_children' }, 'this organization and every customer (firehose)'));
  const boxes = EVENT_TYPES.map((t) => h('input', { type: 'checkbox', name: 'events', value: t, id: `ev-${t.replace(/[^a-z]/g, '-')}` }));
  const slot = h('div');
  const form = h(
    'form',
    { class: 'stack' },
    field('URL', url),
    field('Description (optional)', description),
    field('Scope', scope),
    h('fieldset', { class: 'event-types' }, h('legend', {}, 'Events'), boxes.map((b) => h('span', { class: 'check' }, b, h('label', { for: b.id }, b.value)))),
    h('button', { type: 'submit', class: 'primary' }, 'Create endpoint'),
    slot,
  );
  const dlg = modal('New webhook endpoint', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    const body = { url: url.value.trim(), events: boxes.filter((b) => b.checked).map((b) => b.value), scope: scope.value };
    if (description.value.trim()) body.description = description.value.trim();
    try {
      const r = await once.submit((key) => api.call('POST', '/v1/webhook-endpoints', { org, body, idempotencyKey: key }));
      if (!r) return;
      once = new api.FormKey();
      dlg.close();
      secretDialog('Signing secret', r.signingSecret, 'Store this signing secret now. It is shown once; rotate it to get a new one.');
      await after();
    } catch (e) {
      replace(slot, errorBox(e));
    }
  });
}

