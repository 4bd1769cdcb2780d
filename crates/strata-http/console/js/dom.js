// Building the page without HTML strings: every value from the API becomes a text node, so a
// name like `<img src=x onerror=alert(1)>` shows as those characters. Nothing here uses innerHTML.

/**
 * Makes an element. `attrs`: `class`, any attribute, `on<Event>` listeners (functions) and
 * `props` (set as DOM properties, e.g. `{checked: true}`). Children: strings (text), nodes,
 * arrays of them; null, undefined and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'props') {
      Object.assign(el, value);
    } else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An integer amount of credits, grouped (`12,500`); `—` for null. */
export function credits(n) {
  if (n === null || n === undefined) return '—';
  return Number(n).toLocaleString('en-US');
}

/** An RFC 3339 timestamp shortened for a table (`2026-06-03 18:14:02Z`); `—` for null. */
export function when(iso) {
  if (!iso) return '—';
  return String(iso).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** A `datetime-local` input's value, read as UTC, as the API wants it (`…Z`); null when empty. */
export function utcFromInput(value) {
  if (!value) return null;
  return value.length === 16 ? `${value}:00Z` : `${value}Z`;
}

/** A status word as a badge (`active`, `suspended`, `auto_paused`, `delivered`, …). */
export function badge(status) {
  return h('span', { class: `badge badge-${String(status).replace(/[^a-z_]/g, '')}` }, String(status));
}

/** A labelled form field: `<label>` + control, wired by id. */
let fieldSeq = 0;
export function field(label, control, hint) {
  fieldSeq += 1;
  const id = control.id || `f${fieldSeq}`;
  control.id = id;
  const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

/** A table with a header row; `rows` are arrays of cells (strings or nodes). */
export function table(caption, headers, rows, empty = 'Nothing here yet.') {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))),
    ),
  );
}

/** A modal `<dialog>`; `onClose` runs after it closes, and the dialog then leaves the page. */
export function modal(title, body, onClose) {
  const titleId = `dlg${(fieldSeq += 1)}`;
  const dlg = h(
    'dialog',
    { 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title),
    body,
    h('form', { method: 'dialog', class: 'dialog-actions' }, h('button', { type: 'submit' }, 'Close')),
  );
  dlg.addEventListener('close', () => {
    dlg.replaceChildren();
    dlg.remove();
    if (onClose) onClose();
  });
  document.body.appendChild(dlg);
  dlg.showModal();
  return dlg;
}

/** JSON shown as text (pretty-printed), for event and audit payloads. */
export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/**
 * An error as the user sees it: the envelope's message, its code and status, and the request id
 * to quote to support. `e` is an ApiError or any Error.
 */
export function errorBox(e) {
  const facts = [];
  if (e.code) facts.push(e.status ? `${e.code} (HTTP ${e.status})` : e.code);
  return h(
    'div',
    { class: 'error', role: 'alert' },
    h('p', { class: 'error-message' }, e.message || String(e)),
    facts.length ? h('p', { class: 'error-code' }, facts.join(' ')) : null,
    h('p', { class: 'error-request' }, 'Request id: ', h('code', { class: 'request-id' }, e.requestId || '—')),
  );
}

/** A success or information line, announced to screen readers. */
export function notice(...children) {
  return h('div', { class: 'notice', role: 'status' }, ...children);
}

/** Shows `node` in `slot` (an element), replacing what was there. */
export function show(slot, node) {
  return replace(slot, node);
}

/**
 * Shows a secret once (a new API key or signing secret) with a copy button. The secret exists
 * only inside the dialog: closing it removes the dialog, and nothing else keeps it.
 */
export function secretDialog(title, secret, warning, ...extra) {
  const out = h('input', { type: 'text', readonly: true, class: 'secret', spellcheck: 'false', autocomplete: 'off', props: { value: secret } });
  const status = h('span', { class: 'copy-status', role: 'status' });
  const copy = h(
    'button',
    {
      type: 'button',
      onClick: async () => {
        try {
          await navigator.clipboard.writeText(out.value);
          status.textContent = 'Copied.';
        } catch {
          out.select();
          status.textContent = 'Select the text and copy it (the browser refused the clipboard).';
        }
      },
    },
    'Copy',
  );
  return modal(
    title,
    h(
      'div',
      { class: 'secret-once' },
      h('p', { class: 'warning' }, warning || 'Store this secret now. It is shown once and cannot be read again.'),
      field('Secret', out),
      h('p', {}, copy, ' ', status),
      ...extra,
    ),
  );
}

/** Asks a yes/no question in a dialog; resolves to true when confirmed. */
export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h('button', { type: 'button', class: 'danger', onClick: () => { answer = true; dlg.close(); } }, confirmLabel);
    const dlg = modal(title, h('div', {}, h('p', {}, text), h('p', {}, yes)), () => resolve(answer));
  });
}
