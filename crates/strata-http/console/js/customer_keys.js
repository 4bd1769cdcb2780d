// A customer's API keys (mint with the secret shown once, rotate, revoke) and its projects (read
// inside the child with `X-Layers-Organization`).

import * as api from './api.js';
import { badge, confirmDialog, errorBox, field, h, replace, secretDialog, table, when } from './dom.js';

const DATA_SCOPES = ['*', 'projects:read', 'projects:write', 'content:read', 'content:write', 'jobs:read', 'credits:read', 'webhooks:read', 'webhooks:write', 'audit:read'];

export function keysSection(orgId, archived) {
  const base = `/v1/organizations/${encodeURIComponent(orgId)}/api-keys`;
  const section = h('section', { class: 'card wide', 'aria-labelledby': 'keys-h' });
  const listSlot = h('div');
  const actionSlot = h('div');
  const cursors = [null];

  async function load() {
    let page;
    try {
      page = await api.get(base, { query: { limit: 25, cursor: cursors[cursors.length - 1] } });
    } catch (e) {
      replace(listSlot, errorBox(e));
      return;
    }
    const rows = page.items.map((k) => [
      k.name,
      h('code', {}, k.prefix),
      k.env,
      k.scopes.join(' '),
      badge(k.killSwitch ? 'killed' : k.status),
      when(k.createdAt),
      when(k.lastUsedAt),
      k.supersededBy ? `rotated; works until ${when(k.graceUntil)}` : '—',
      k.status === 'active' && !archived ? keyActions(k) : '—',
    ]);
    const prev = h('button', { type: 'button', disabled: cursors.length === 1, onClick: () => { cursors.pop(); load(); } }, 'Newer');
    const next = h('button', { type: 'button', disabled: !page.nextCursor, onClick: () => { cursors.push(page.nextCursor); load(); } }, 'Older');
    replace(
      listSlot,
      table('API keys', ['Name', 'Prefix', 'Env', 'Scopes', 'Status', 'Created', 'Last used', 'Rotation', 'Actions'], rows, 'No keys yet.'),
      h('div', { class: 'pager' }, prev, ' ', next),
    );
  }

  function keyActions(k) {
    const rotate = async () => {
      try {
        const r = await api.call('POST', `${base}/${encodeURIComponent(k.id)}/rotate`, { idempotencyKey: api.newIdempotencyKey() });
        secretDialog(`New secret for “${r.apiKey.name}”`, r.secret, r.warning, h('p', {}, `The old key keeps working until ${when(r.previousKey ? r.previousKey.graceUntil : null)}.`));
        await load();
      } catch (e) {
        replace(actionSlot, errorBox(e));
      }
    };
    const revoke = async () => {
      if (!(await confirmDialog('Revoke key', `Revoke “${k.name}” (${k.prefix})? Its next use is refused.`, 'Revoke'))) return;
      try {
        await api.call('DELETE', `${base}/${encodeURIComponent(k.id)}`, { idempotencyKey: api.newIdempotencyKey() });
        await load();
      } catch (e) {
        replace(actionSlot, errorBox(e));
      }
    };
    return h(
      'span',
      { class: 'row-actions' },
      h('button', { type: 'button', onClick: rotate, 'aria-label': `Rotate ${k.name}` }, 'Rotate'),
      h('button', { type: 'button', class: 'danger', onClick: revoke, 'aria-label': `Revoke ${k.name}` }, 'Revoke'),
    );
  }

  let once = new api.FormKey();
  const name = h('input', { name: 'keyName', required: true, maxlength: '120', autocomplete: 'off' });
  const env = h('select', { name: 'env' }, h('option', { value: 'live' }, 'live'), h('option', { value: 'test' }, 'test (sandbox, burns no credits)'));
  const boxes = DATA_SCOPES.map((s) => h('input', { type: 'checkbox', name: 'scope', value: s, id: `scope-${s.replace(/[^a-z]/g, '-')}` }));
  const mintSlot = h('div');
  const mint = h(
    'form',
    { class: 'stack mint' },
    h('h3', {}, 'Mint a key'),
    field('Key name', name),
    field('Environment', env),
    h('fieldset', {}, h('legend', {}, 'Scopes'), boxes.map((b) => h('span', { class: 'check' }, b, h('label', { for: b.id }, b.value)))),
    h('button', { type: 'submit', class: 'primary' }, 'Mint key'),
    mintSlot,
  );
  mint.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (once.busy) return; // a submit is in flight: this one is the same request
    const scopes = boxes.filter((b) => b.checked).map((b) => b.value);
    const body = { name: name.value.trim(), scopes, env: env.value };
    try {
      const r = await once.submit((key) => api.call('POST', base, { body, idempotencyKey: key }));
      if (!r) return;
      mint.reset();
      once = new api.FormKey();
      replace(mintSlot);
      secretDialog(`API key “${r.apiKey.name}”`, r.secret, r.warning);
      await load();
    } catch (e) {
      replace(mintSlot, errorBox(e));
    }
  });

  replace(section, h('h2', { id: 'keys-h' }, 'API keys'), actionSlot, listSlot, archived ? null : mint);
  load();
  return section;
}

export function projectsSection(orgId) {
  const section = h('section', { class: 'card wide', 'aria-labelledby': 'projects-h' });
  const cursors = [null];
  async function load() {
    const head = h('h2', { id: 'projects-h' }, 'Projects');
    let page;
    try {
      page = await api.get('/v1/projects', { org: orgId, query: { limit: 25, cursor: cursors[cursors.length - 1] } });
    } catch (e) {
      replace(section, head, errorBox(e));
      return;
    }
    const rows = page.items.map((p) => [p.name, h('code', {}, p.id), badge(p.status), p.customerExternalId || '—', p.timezone, when(p.createdAt)]);
    const prev = h('button', { type: 'button', disabled: cursors.length === 1, onClick: () => { cursors.pop(); load(); } }, 'Newer');
    const next = h('button', { type: 'button', disabled: !page.nextCursor, onClick: () => { cursors.push(page.nextCursor); load(); } }, 'Older');
    replace(section, head, table('Projects', ['Name', 'Id', 'Status', 'External id', 'Time zone', 'Created'], rows, 'No projects.'), h('div', { class: 'pager' }, prev, ' ', next));
  }
  load();
  return section;
}
