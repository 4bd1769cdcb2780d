// Customers: the partner's child organizations at a glance (`GET /v1/organizations?expand=summary`),
// filtered by status, searched by name or externalId prefix, paged by cursor; and a new customer.

import * as api from './api.js';
import { badge, credits, errorBox, field, h, modal, replace, table } from './dom.js';

const PAGE = 25;

/** "used / cap" for this period, from the row's summary. */
function usageAgainstCap(summary) {
  if (!summary) return '—';
  const cap = summary.creditConfig.monthlyCreditCap;
  return `${credits(summary.usedThisPeriod)} / ${cap === null ? 'no cap' : credits(cap)}`;
}

export async function renderCustomers(main, ctx) {
  const state = { search: ctx.params.get('search') || '', status: ctx.params.get('status') || '', cursors: [null] };

  const search = h('input', { type: 'search', name: 'search', autocomplete: 'off', props: { value: state.search } });
  const status = h(
    'select',
    { name: 'status' },
    ['', 'active', 'suspended', 'archived'].map((s) => h('option', { value: s, props: { selected: s === state.status } }, s || 'any status')),
  );
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter customers' },
    field('Search name or external id', search),
    field('Status', status),
    h('button', { type: 'submit' }, 'Apply'),
  );
  const listSlot = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });

  async function load() {
    const cursor = state.cursors[state.cursors.length - 1];
    let page;
    try {
      page = await api.get('/v1/organizations', {
        query: { expand: 'summary', limit: PAGE, search: state.search, status: state.status, cursor },
      });
    } catch (e) {
      replace(listSlot, errorBox(e));
      replace(pager);
      return;
    }
    const rows = page.items.map((o) => [
      h('a', { href: `#/customers/${encodeURIComponent(o.id)}`, class: 'org-name' }, o.name),
      (o.metadata && o.metadata.externalId) || '—',
      badge(o.status),
      credits(o.summary && o.summary.balance),
      credits(o.summary && o.summary.available),
      usageAgainstCap(o.summary),
    ]);
    replace(
      listSlot,
      table('Customers', ['Name', 'External id', 'Status', 'Balance', 'Available', 'Used this period / cap'], rows, 'No customers match.'),
    );
    const prev = h('button', { type: 'button', disabled: state.cursors.length === 1, onClick: () => { state.cursors.pop(); load(); } }, 'Previous page');
    const next = h('button', { type: 'button', disabled: !page.nextCursor, onClick: () => { state.cursors.push(page.nextCursor); load(); } }, 'Next page');
    replace(pager, prev, ' ', next, h('span', { class: 'page-no' }, ` page ${state.cursors.length}`));
  }

  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.search = search.value.trim();
    state.status = status.value;
    state.cursors = [null];
    load();
  });
  status.addEventListener('change', () => filters.requestSubmit());

  replace(
    main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Customers'), h('button', { type: 'button', class: 'primary', onClick: () => newCustomer() }, 'New customer')),
    filters,
    listSlot,
    pager,
  );
  await load();
}

function newCustomer() {
  const once = new api.FormKey();
  const name = h('input', { name: 'name', required: true, maxlength: '128', autocomplete: 'off' });
  const externalId = h('input', { name: 'externalId', maxlength: '500', autocomplete: 'off' });
  const email = h('input', { name: 'billingEmail', type: 'email', autocomplete: 'off' });
  const slot = h('div');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create customer');
  const form = h(
    'form',
    { class: 'stack' },
    field('Name', name),
    field('External id (optional)', externalId, 'Your own id for this customer; stored as metadata.externalId and searchable.'),
    field('Billing email (optional)', email),
    submit,
    slot,
  );
  const dlg = modal('New customer', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    const body = { name: name.value.trim() };
    if (externalId.value.trim()) body.metadata = { externalId: externalId.value.trim() };
    if (email.value.trim()) body.billingEmail = email.value.trim();
    submit.disabled = true;
    try {
      const org = await once.submit((key) => api.call('POST', '/v1/organizations', { body, idempotencyKey: key }));
      if (org) {
        once.renew();
        dlg.close();
        location.hash = `#/customers/${encodeURIComponent(org.id)}`;
      }
    } catch (e) {
      replace(slot, errorBox(e));
    } finally {
      submit.disabled = false;
    }
  });
}
