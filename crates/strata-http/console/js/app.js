// The console's shell: sign in with a pasted key, the header (who you are, sign out), the
// navigation and the hash router (`#/customers`, `#/customers/<orgId>`, `#/webhooks`, `#/audit`,
// `#/events`; `?org=<childId>` on the last three acts inside a child).

import * as api from './api.js';
import { credits, errorBox, field, h, replace } from './dom.js';
import { renderCustomers } from './customers.js';
import { renderCustomer } from './customer.js';
import { renderWebhooks } from './webhooks.js';
import { renderAudit, renderEvents } from './logs.js';

const top = document.getElementById('top');
const main = document.getElementById('main');
let me = null;

function signInView(error) {
  const key = h('input', { type: 'password', name: 'apiKey', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'lp_live_…' });
  const keep = h('input', { type: 'checkbox', name: 'keep' });
  const slot = h('div', {}, error ? errorBox(error) : null);
  const form = h(
    'form',
    { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to the strata console'),
    h('p', {}, 'Paste an API key of your organization (an org:admin key manages your customers).'),
    field('API key', key, 'Held in this tab only: never in a cookie, the address bar or local storage.'),
    h('div', { class: 'field check' }, keep, h('label', { for: (keep.id = 'keep-key') }, 'Stay signed in in this tab (until it closes)')),
    h('button', { type: 'submit' }, 'Sign in'),
    slot,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    api.signIn(key.value.trim(), keep.checked);
    key.value = '';
    try {
      me = await api.get('/v1/whoami');
      route();
    } catch (e) {
      api.signOut();
      replace(slot, errorBox(e));
    }
  });
  replace(top);
  replace(main, form);
  key.focus();
}

function header() {
  const nav = [
    ['#/customers', 'Customers'],
    ['#/webhooks', 'Webhooks'],
    ['#/audit', 'Audit log'],
    ['#/events', 'Events'],
  ];
  const current = `#/${(location.hash.slice(2) || 'customers').split(/[/?]/)[0]}`;
  replace(
    top,
    h(
      'div',
      { class: 'bar' },
      h('a', { class: 'brand', href: '#/customers' }, 'strata console'),
      h(
        'nav',
        { 'aria-label': 'Main' },
        h('ul', {}, nav.map(([href, label]) => h('li', {}, h('a', { href, 'aria-current': href === current ? 'page' : null }, label)))),
      ),
      h(
        'div',
        { class: 'whoami', 'aria-label': 'Signed in as' },
        h('span', { class: 'who-org' }, me.organizationName),
        h('span', { class: 'who-id' }, me.organizationId),
        h('span', { class: 'who-tier' }, `tier ${me.rateLimitTier}`),
        h('span', { class: 'who-scopes' }, `scopes ${me.scopes.join(' ')}`),
        h('span', { class: 'who-balance' }, `balance ${credits(me.creditBalance)}`),
        me.killSwitch || me.apiAccessRevoked ? h('span', { class: 'badge badge-suspended' }, 'access held') : null,
        h('button', { type: 'button', class: 'signout', onClick: signOut }, 'Sign out'),
      ),
    ),
  );
}

function signOut() {
  api.signOut();
  me = null;
  location.hash = '';
  signInView();
}

/** `#/a/b?x=1` → {parts: ['a','b'], params: URLSearchParams('x=1')}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
}

async function route() {
  if (!me) return signInView();
  header();
  const { parts, params } = parseHash();
  const ctx = {
    me,
    params,
    refreshMe: async () => {
      me = await api.get('/v1/whoami');
      header();
    },
  };
  replace(main);
  try {
    if (parts[0] === 'customers' && parts[1]) await renderCustomer(main, parts[1], ctx);
    else if (parts[0] === 'webhooks') await renderWebhooks(main, ctx);
    else if (parts[0] === 'audit') await renderAudit(main, ctx);
    else if (parts[0] === 'events') await renderEvents(main, ctx);
    else await renderCustomers(main, ctx);
  } catch (e) {
    replace(main, errorBox(e));
  }
  // Focus goes to the new page's content, unless the user already moved it somewhere that is
  // still on the page while its data loaded (a keyboard user tabbing ahead): taking it back
  // would send their next key to the wrong place.
  const focused = document.activeElement;
  if (!focused || focused === document.body || !focused.isConnected) main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
// The skip link moves focus; it must not change the hash, which is the router's.
document.querySelector('.skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

(async function start() {
  if (!api.restore()) return signInView();
  try {
    me = await api.get('/v1/whoami');
    route();
  } catch (e) {
    api.signOut();
    signInView(e);
  }
})();
