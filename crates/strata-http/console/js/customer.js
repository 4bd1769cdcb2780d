// One customer (a child organization): lifecycle (suspend, resume, archive), wallet, credit config
// (cap and auto-refill), allocation, the usage chart, the credit ledger, keys and projects.

import * as api from './api.js';
import { badge, credits, errorBox, field, h, modal, notice, replace, table, when } from './dom.js';
import { keysSection, projectsSection } from './customer_keys.js';
import { usageSection } from './usage.js';

/** A message carried over one re-render of the page (e.g. what archiving reclaimed). */
let flash = null;

export async function renderCustomer(main, rawId, ctx) {
  const id = rawId;
  const base = `/v1/organizations/${encodeURIComponent(id)}`;
  const org = await api.get(base);
  const rerender = () => renderCustomer(main, id, ctx);
  const carried = flash;
  flash = null;

  const wallet = h('section', { class: 'card', 'aria-labelledby': 'wallet-h' });
  const ledger = h('section', { class: 'card wide', 'aria-labelledby': 'ledger-h' });
  const usage = usageSection(id);
  const refreshMoney = async () => {
    await Promise.all([loadWallet(wallet, base), ledgerSection(ledger, base, true), usage.reload(), ctx.refreshMe().catch(() => {})]);
  };

  const archived = org.status === 'archived';
  replace(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/customers' }, 'Customers'), ' / ', h('span', {}, org.name)),
    carried,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { class: 'org-name' }, org.name),
      badge(org.status),
      lifecycleButtons(org, base, rerender),
    ),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Id'), h('dd', {}, h('code', {}, org.id)),
      h('dt', {}, 'External id'), h('dd', {}, (org.metadata && org.metadata.externalId) || '—'),
      h('dt', {}, 'Billing email'), h('dd', {}, org.billingEmail || '—'),
      h('dt', {}, 'Projects'), h('dd', {}, String(org.summary ? org.summary.projectCount : '—')),
      h('dt', {}, 'Created'), h('dd', {}, when(org.createdAt)),
      archived ? [h('dt', {}, 'Archived'), h('dd', {}, when(org.archivedAt))] : null,
    ),
    h(
      'p',
      { class: 'links' },
      'Inside this customer: ',
      h('a', { href: `#/webhooks?org=${encodeURIComponent(id)}` }, 'webhooks'), ', ',
      h('a', { href: `#/audit?org=${encodeURIComponent(id)}` }, 'audit log'), ', ',
      h('a', { href: `#/events?org=${encodeURIComponent(id)}` }, 'events'),
    ),
    h(
      'div',
      { class: 'grid' },
      wallet,
      archived ? null : allocateSection(base, refreshMoney),
      configSection(base, archived, () => loadWallet(wallet, base)),
      usage.node,
      ledger,
      keysSection(id, archived),
      projectsSection(id),
    ),
  );
  await Promise.all([loadWallet(wallet, base), ledgerSection(ledger, base, true), usage.reload()]);
}

function lifecycleButtons(org, base, rerender) {
  const slot = h('div', { class: 'action-result' });
  const lifecycle = async (verb) => {
    try {
      await api.call('POST', `${base}/${verb}`, { idempotencyKey: api.newIdempotencyKey() });
      await rerender();
    } catch (e) {
      replace(slot, errorBox(e));
    }
  };
  if (org.status === 'archived') return slot;
  return h(
    'div',
    { class: 'actions' },
    org.status === 'active'
      ? h('button', { type: 'button', onClick: () => lifecycle('suspend') }, 'Suspend')
      : h('button', { type: 'button', onClick: () => lifecycle('resume') }, 'Resume'),
    h('button', { type: 'button', class: 'danger', onClick: () => archiveDialog(org, base, rerender) }, 'Archive…'),
    slot,
  );
}

function archiveDialog(org, base, rerender) {
  const once = new api.FormKey();
  const typed = h('input', { name: 'confirmName', autocomplete: 'off', spellcheck: 'false' });
  const go = h('button', { type: 'submit', class: 'danger', disabled: true }, 'Archive this customer');
  const slot = h('div');
  const form = h(
    'form',
    { class: 'stack' },
    h('p', {}, 'Archiving is permanent: every key of this customer is revoked, its unspent credits return to your wallet and its scheduled posts are canceled.'),
    field('Type the customer’s name to confirm', typed, h('span', {}, 'The name is: ', h('strong', { class: 'confirm-name' }, org.name))),
    go,
    slot,
  );
  typed.addEventListener('input', () => { go.disabled = typed.value !== org.name; });
  const dlg = modal('Archive customer', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    if (typed.value !== org.name) return;
    go.disabled = true;
    try {
      const r = await once.submit((key) => api.call('DELETE', base, { idempotencyKey: key }));
      if (!r) return;
      flash = notice(
        h('strong', {}, 'Archived. '),
        h('span', { class: 'reclaimed' }, `Reclaimed credits: ${credits(r.reclaimedCredits)}`), '. ',
        h('span', { class: 'revoked' }, `Revoked API keys: ${r.revokedApiKeys}`), '.',
      );
      dlg.close();
      await rerender();
    } catch (e) {
      replace(slot, errorBox(e));
      go.disabled = false;
    }
  });
}

async function loadWallet(section, base) {
  let w;
  try {
    w = await api.get(`${base}/credits`);
  } catch (e) {
    replace(section, h('h2', { id: 'wallet-h' }, 'Wallet'), errorBox(e));
    return;
  }
  const row = (label, value, cls) => [h('dt', {}, label), h('dd', { class: cls }, value)];
  replace(
    section,
    h('h2', { id: 'wallet-h' }, 'Wallet'),
    h(
      'dl',
      { class: 'facts wallet' },
      row('Balance', credits(w.balance), 'wallet-balance'),
      row('Available', credits(w.available), 'wallet-available'),
      row('Reserved', credits(w.reservedCredits)),
      row('Prepaid', credits(w.prepaidBalance)),
      row('Included remaining', credits(w.includedRemaining)),
      row('Used this period', credits(w.usedThisPeriod), 'wallet-used'),
      row('Period', `${when(w.currentPeriod.start)} → ${when(w.currentPeriod.end)}`),
      row('Billing status', w.billingStatus),
    ),
  );
}

function allocateSection(base, after) {
  let once = new api.FormKey();
  const amount = h('input', { name: 'credits', type: 'number', min: '1', step: '1', required: true, inputmode: 'numeric' });
  const description = h('input', { name: 'description', maxlength: '500', autocomplete: 'off' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Allocate');
  const slot = h('div');
  const form = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'alloc-h' },
    h('h2', { id: 'alloc-h' }, 'Allocate credits'),
    h('p', { class: 'hint' }, 'Moves credits from your prepaid balance into this customer’s wallet.'),
    field('Credits', amount),
    field('Description (optional)', description),
    submit,
    slot,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    const body = { credits: Number(amount.value) };
    if (description.value.trim()) body.description = description.value.trim();
    submit.disabled = true;
    try {
      const r = await once.submit((key) => api.call('POST', `${base}/credits/allocate`, { body, idempotencyKey: key }));
      if (!r) return;
      // The form is done: clear it so the next allocation is a new request with a new key.
      form.reset();
      once = new api.FormKey();
      replace(slot, notice(`Allocated ${credits(r.allocated)} credits (${r.id}). Balance now ${credits(r.balance)}.`));
      await after();
    } catch (e) {
      replace(slot, errorBox(e));
    } finally {
      submit.disabled = false;
    }
  });
  return h('section', { class: 'card' }, form);
}

function configSection(base, archived, after) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'config-h' });
  const num = (name, min) => h('input', { name, type: 'number', min, step: '1', inputmode: 'numeric', disabled: archived });
  const cap = num('monthlyCreditCap', '0');
  const threshold = num('refillThreshold', '0');
  const amount = num('refillAmount', '1');
  const rule = h('p', { class: 'rule', id: 'refill-rule', 'aria-live': 'polite' });
  const state = h('p', { class: 'refill-state' });
  const submit = h('button', { type: 'submit', class: 'primary', disabled: archived }, 'Save cap and refill');
  const slot = h('div');
  let once = new api.FormKey();

  const checkRule = () => {
    const both = threshold.value !== '' && amount.value !== '';
    const neither = threshold.value === '' && amount.value === '';
    const ok = both || neither;
    rule.className = ok ? 'rule' : 'rule rule-broken';
    rule.textContent = ok
      ? `Auto-refill needs both a threshold and an amount, or neither. ${both ? 'Auto-refill will be on.' : 'Auto-refill will be off.'}`
      : 'Auto-refill needs both a threshold and an amount, or neither: fill in both, or clear both.';
    submit.disabled = archived || !ok;
    return ok;
  };
  for (const input of [threshold, amount]) input.addEventListener('input', checkRule);

  const fill = (c) => {
    cap.value = c.config.monthlyCreditCap ?? '';
    threshold.value = c.config.refillThreshold ?? '';
    amount.value = c.config.refillAmount ?? '';
    state.textContent = `Now: cap ${c.config.monthlyCreditCap ?? 'none'}, auto-refill ${c.config.autoRefillEnabled ? `on (below ${c.config.refillThreshold}, add ${c.config.refillAmount})` : 'off'}.`;
    checkRule();
  };

  const form = h(
    'form',
    { class: 'stack' },
    h('h2', { id: 'config-h' }, 'Monthly cap and auto-refill'),
    state,
    field('Monthly credit cap (empty: no cap)', cap),
    field('Refill when available drops below', threshold),
    field('Refill amount', amount),
    rule,
    submit,
    slot,
  );
  rule.id = 'refill-rule';
  threshold.setAttribute('aria-describedby', 'refill-rule');
  amount.setAttribute('aria-describedby', 'refill-rule');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    if (!checkRule()) return;
    const val = (input) => (input.value === '' ? null : Number(input.value));
    const body = { monthlyCreditCap: val(cap), refillThreshold: val(threshold), refillAmount: val(amount) };
    submit.disabled = true;
    try {
      const r = await once.submit((key) => api.call('PATCH', `${base}/credit-config`, { body, idempotencyKey: key }));
      if (!r) return;
      once = new api.FormKey();
      fill(r);
      replace(slot, notice('Saved.'));
      await after();
    } catch (e) {
      replace(slot, errorBox(e));
    } finally {
      checkRule();
    }
  });
  replace(section, form);
  api.get(`${base}/credit-config`).then(fill, (e) => replace(slot, errorBox(e)));
  return section;
}

const LEDGER_TYPES = ['', 'usage', 'refund', 'grant', 'purchase', 'adjustment', 'allocation'];

async function ledgerSection(section, base, fresh) {
  if (fresh || !section.ledgerState) section.ledgerState = { type: section.ledgerState ? section.ledgerState.type : '', cursors: [null] };
  const st = section.ledgerState;
  const type = h('select', { name: 'eventType' }, LEDGER_TYPES.map((t) => h('option', { value: t, props: { selected: t === st.type } }, t || 'every type')));
  type.addEventListener('change', () => { st.type = type.value; st.cursors = [null]; ledgerSection(section, base, false); });
  const head = [h('h2', { id: 'ledger-h' }, 'Credit ledger'), h('div', { class: 'filters' }, field('Event type', type))];
  let page;
  try {
    page = await api.get(`${base}/credits/events`, { query: { eventType: st.type, limit: 25, cursor: st.cursors[st.cursors.length - 1] } });
  } catch (e) {
    replace(section, head, errorBox(e));
    return;
  }
  const rows = page.items.map((e) => [
    when(e.createdAt),
    e.eventType,
    h('span', { class: e.credits < 0 ? 'neg' : 'pos' }, `${e.credits > 0 ? '+' : ''}${credits(e.credits)}`),
    e.format || '—',
    credits(e.balanceAfterPrepaid),
    (e.metadata && (e.metadata.trigger || e.metadata.description || e.metadata.transferId)) || '—',
  ]);
  const prev = h('button', { type: 'button', disabled: st.cursors.length === 1, onClick: () => { st.cursors.pop(); ledgerSection(section, base, false); } }, 'Newer');
  const next = h('button', { type: 'button', disabled: !page.nextCursor, onClick: () => { st.cursors.push(page.nextCursor); ledgerSection(section, base, false); } }, 'Older');
  replace(
    section,
    head,
    table('Credit ledger', ['When', 'Type', 'Credits', 'Format', 'Prepaid after', 'Note'], rows, 'No ledger entries.'),
    h('div', { class: 'pager' }, prev, ' ', next),
  );
}

