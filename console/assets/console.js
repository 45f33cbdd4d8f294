// The curation console: a few views over the JSON API (/api/...), drawn with DOM calls only.
// Every text from the server is set as a text node (never parsed as HTML), so an example whose
// text holds markup shows that markup as text.
'use strict';

const state = { me: null, timer: null };

// el('td', {class: 'num'}, 'text', child...): strings and numbers become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'href' && !String(value).startsWith('#')) continue;  // links stay in the console
    if (key === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}
function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const SVG = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('HTTP ' + status));
    this.status = status;
    this.code = e.code || '';
    this.field = e.field || '';
  }
}

async function api(path, options) {
  const init = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
  if (init.method && init.method !== 'GET') init.headers['Content-Type'] = 'application/json';
  const response = await fetch('/api/' + path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith('session')) showSignIn('Signed out: ' +
        ((body && body.error && body.error.message) || 'sign in again'));
    throw new ApiError(response.status, body);
  }
  return body;
}

const enc = encodeURIComponent;
const num = (v) => Number(v || 0);
const fmtInt = (v) => num(v).toLocaleString('en-US');
function fmtBytes(v) {
  let n = num(v);
  for (const unit of ['B', 'KiB', 'MiB', 'GiB', 'TiB']) {
    if (n < 1024 || unit === 'TiB') return (unit === 'B' ? n : n.toFixed(1)) + ' ' + unit;
    n /= 1024;
  }
}
function fmtScore(v) {
  if (typeof v === 'string') return v;  // "Infinity", "NaN" in proto JSON
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4);
}
const pct = (v) => (100 * num(v)).toFixed(1) + '%';
const shortEnum = (v, prefix) => String(v || '').replace(prefix, '').toLowerCase();
const canWrite = () => state.me && (state.me.role === 'ROLE_WRITER' || state.me.role === 'ROLE_ADMIN');

function view() { return document.getElementById('view'); }
function show(...children) {
  const v = view();
  v.replaceChildren();
  append(v, children);
}
function errorBox(err) {
  return el('p', { class: 'error', id: 'error' },
            (err.code ? err.code + ': ' : '') + err.message);
}
function kv(pairs) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of pairs.filter((p) => p)) append(dl, [el('dt', {}, k), el('dd', {}, v)]);
  return dl;
}
function table(id, headers, rows) {
  const head = el('tr', {}, headers.map((h) => el('th', { class: h.endsWith('#') ? 'num' : '' },
                                                    h.replace(/#$/, ''))));
  return el('table', { id }, el('thead', {}, head), el('tbody', {}, rows));
}

// ---- sign-in ----

function showSignIn(message) {
  stopPolling();
  state.me = null;
  document.getElementById('signin').hidden = false;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('whoami').textContent = '';
  document.getElementById('signin-error').textContent = message || '';
  view().replaceChildren();
}

function signedIn(me) {
  state.me = me;
  document.getElementById('signin').hidden = true;
  document.getElementById('sign-out').hidden = false;
  document.getElementById('whoami').textContent =
      (me.tenant ? 'tenant ' + me.tenant : 'no tenant (admin token)') + ' · ' +
      shortEnum(me.role, 'ROLE_') + (me.auth ? '' : ' · authentication off');
  route();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById('token');
  try {
    const me = await api('session', { method: 'POST', body: JSON.stringify({ token: input.value }) });
    input.value = '';  // the cookie holds it now; the page keeps no copy
    signedIn(me);
  } catch (err) {
    document.getElementById('signin-error').textContent = err.message;
  }
}

async function signOut() {
  try { await api('session', { method: 'DELETE' }); } catch (e) { /* signed out either way */ }
  location.hash = '#/';
  showSignIn('');
}

// ---- views ----

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}
function poll(fn, ms) {
  stopPolling();
  state.timer = setTimeout(fn, ms);
}

async function datasetsView() {
  const body = await api('datasets?page_size=1000');
  const rows = body.datasets.map((d) => el('tr', {},
      el('td', {}, el('a', { href: '#/datasets/' + enc(d.name) }, d.name)),
      el('td', {}, shortEnum(d.kind, 'DATASET_KIND_')),
      el('td', { class: 'num' }, fmtInt(d.example_count)),
      el('td', { class: 'num' }, fmtInt(d.selection_count)),
      el('td', { class: 'num' }, fmtBytes(d.stored_bytes)),
      el('td', {}, embeddingText(d.embedding)),
      el('td', { class: 'text' }, d.description)));
  show(el('h1', {}, 'Datasets'),
       rows.length ? table('datasets-table', ['Name', 'Kind', 'Examples#', 'Selections#', 'Stored#',
                                              'Embedding', 'Description'], rows)
                   : el('p', { class: 'muted' }, 'No datasets yet.'));
}

function embeddingText(e) {
  if (!e) return '';
  const source = shortEnum(e.source, 'SOURCE_');
  return source + (e.embedder ? ' ' + e.embedder : '') + ', ' + e.dim + ' dims';
}

function operationRow(op, onChange) {
  const m = op.metadata || {};
  const id = op.name.replace(/^operations\//, '');
  const st = shortEnum(m.state, 'OPERATION_STATE_');
  const progress = m.progress || {};
  const running = m.state === 'OPERATION_STATE_RUNNING';
  const cells = [
    el('td', { class: 'id' }, el('a', { href: '#/operations/' + enc(id) }, id)),
    el('td', {}, shortEnum(m.kind, 'OPERATION_KIND_')),
    el('td', { class: 'state-' + st }, st),
    el('td', {}, running ? el('progress', { max: 1, value: num(progress.fraction) }) : '',
       running ? ' ' + pct(progress.fraction) : '',
       m.state === 'OPERATION_STATE_QUEUED' ? 'position ' + m.queue_position : ''),
    el('td', { class: 'text' }, progress.stage || (op.error ? op.error.message : '')),
  ];
  // Lists carry no results; a finished operation's page shows its result.
  let result = '';
  if (op.selection) result = el('a', { href: '#/selections/' + enc(op.selection.id) }, op.selection.id);
  else if (m.state === 'OPERATION_STATE_SUCCEEDED') {
    result = el('a', { href: '#/operations/' + enc(id), class: 'result' },
                m.kind === 'OPERATION_KIND_RECOMMEND_BUDGET' ? 'learning curve' : 'result');
  }
  cells.push(el('td', {}, result));
  // As over gRPC: stopping a selection takes a WRITER token, other jobs a READER one.
  const mayCancel = canWrite() || m.kind !== 'OPERATION_KIND_SELECT';
  const action = !op.done && mayCancel
      ? el('button', { class: 'danger cancel', type: 'button', onclick: async () => {
          try { await api('operations/' + enc(id) + '/cancel', { method: 'POST' }); } catch (e) {
            alert(e.message); }
          onChange();
        } }, 'Cancel')
      : '';
  cells.push(el('td', {}, action));
  return el('tr', { 'data-operation': id }, cells);
}

async function datasetView(name) {
  const [d, sels, ops] = await Promise.all([
    api('datasets/' + enc(name)),
    api('datasets/' + enc(name) + '/selections?page_size=1000'),
    api('datasets/' + enc(name) + '/operations?page_size=100'),
  ]);
  const compare = el('button', { type: 'button', id: 'compare', onclick: () => {
    const picked = [...document.querySelectorAll('input.pick:checked')].map((c) => c.value);
    if (picked.length !== 2) { alert('Pick two selections'); return; }
    location.hash = '#/compare/' + enc(picked[0]) + '/' + enc(picked[1]);
  } }, 'Compare the two ticked');
  const selRows = sels.selections.map((s) => el('tr', {},
      el('td', {}, el('input', { type: 'checkbox', class: 'pick', value: s.id })),
      el('td', {}, el('a', { href: '#/selections/' + enc(s.id) }, s.id)),
      el('td', {}, s.display_name),
      el('td', {}, shortEnum(s.method, 'SELECTION_METHOD_')),
      el('td', {}, shortEnum(s.unit, 'SELECTION_UNIT_')),
      el('td', { class: 'num' }, fmtInt(s.summary.selected_count)),
      el('td', { class: 'num' }, fmtInt(s.summary.pool_size)),
      el('td', {}, s.create_time ? s.create_time.replace('T', ' ').replace(/\..*|Z/, '') : '')));
  const opsBox = el('div', { id: 'operations' });
  const refresh = async () => {
    const fresh = await api('datasets/' + enc(name) + '/operations?page_size=100');
    renderOps(fresh);
  };
  const renderOps = (body) => {
    const rows = body.operations.map((op) => operationRow(op, refresh));
    opsBox.replaceChildren(rows.length
        ? table('operations-table', ['Operation', 'Kind', 'State', 'Progress', 'Stage', 'Result', ''], rows)
        : el('p', { class: 'muted' }, 'No operations.'));
    // Live progress: poll while anything is queued or running.
    if (body.operations.some((op) => !op.done)) poll(() => refresh().catch(() => {}), 1000);
  };
  show(el('h1', {}, 'Dataset ', el('span', { id: 'dataset-name' }, d.name)),
       el('div', { class: 'card' }, kv([
         ['Kind', shortEnum(d.kind, 'DATASET_KIND_')],
         ['Examples', fmtInt(d.example_count)],
         d.kind === 'DATASET_KIND_UNPAIRED'
             ? ['Desirable / undesirable', fmtInt(d.desirable_count) + ' / ' + fmtInt(d.undesirable_count)]
             : null,
         ['Indexed vectors', fmtInt(d.indexed_vectors)],
         ['Stored', fmtBytes(d.stored_bytes)],
         ['Embedding', embeddingText(d.embedding)],
         ['Description', d.description]])),
       el('h2', {}, 'Selections'),
       selRows.length ? [table('selections-table', ['', 'Id', 'Name', 'Method', 'Unit', 'Selected#',
                                                     'Pool#', 'Created'], selRows), compare]
                      : el('p', { class: 'muted' }, 'No selections.'),
       el('h2', {}, 'Operations'), opsBox);
  renderOps(ops);
}

function exampleCells(example) {
  if (!example) return [el('td', { class: 'text muted' }, '(example not found)'), el('td', {})];
  if (example.pair) {
    return [el('td', { class: 'text prompt' }, example.pair.prompt),
            el('td', { class: 'text' },
               el('div', { class: 'role' }, 'chosen'), el('div', { class: 'chosen' }, example.pair.chosen),
               el('div', { class: 'role' }, 'rejected'), el('div', { class: 'rejected' }, example.pair.rejected))];
  }
  const u = example.unpaired || {};
  return [el('td', { class: 'text prompt' }, u.prompt),
          el('td', { class: 'text' }, el('div', { class: 'role' }, shortEnum(u.label, 'LABEL_')),
             el('div', { class: 'completion' }, u.completion))];
}

function histogramSvg(h) {
  const W = 520, H = 180, L = 44, B = 28, T = 10, R = 10;
  const svg = svgEl('svg', { id: 'histogram', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                             role: 'img', 'aria-label': 'score histogram' });
  const max = Math.max(1, ...h.counts);
  const bw = (W - L - R) / h.counts.length;
  svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  h.counts.forEach((c, i) => {
    const bh = (H - B - T) * c / max;
    const bar = svgEl('rect', { class: 'bar', x: L + i * bw + 1, y: H - B - bh,
                                width: Math.max(1, bw - 2), height: bh });
    bar.appendChild(svgEl('title', {}, c + ' items'));
    svg.appendChild(bar);
  });
  svg.appendChild(svgEl('text', { class: 'label', x: L, y: H - 8 }, fmtScore(h.min)));
  svg.appendChild(svgEl('text', { class: 'label', x: W - R, y: H - 8, 'text-anchor': 'end' }, fmtScore(h.max)));
  svg.appendChild(svgEl('text', { class: 'label', x: L - 6, y: T + 8, 'text-anchor': 'end' }, max));
  svg.appendChild(svgEl('text', { class: 'label', x: L - 6, y: H - B, 'text-anchor': 'end' }, 0));
  return svg;
}

async function selectionView(id, params) {
  const limit = 25;
  const offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  const [page, hist] = await Promise.all([
    api('selections/' + enc(id) + '?offset=' + offset + '&limit=' + limit),
    api('selections/' + enc(id) + '/histogram?bins=30'),
  ]);
  const s = page.selection;
  const rows = page.items.map((it) => el('tr', { class: it.in_selection ? '' : 'muted' },
      el('td', { class: 'num' }, it.rank),
      el('td', { class: 'id' }, it.example_id),
      el('td', {}, shortEnum(it.side, 'SIDE_').replace('unspecified', '')),
      el('td', { class: 'num score' }, fmtScore(it.score)),
      exampleCells(it.example)));
  const total = num(page.total);
  const pager = el('div', { class: 'pager' },
      offset > 0 ? el('a', { href: `#/selections/${enc(id)}?offset=${Math.max(0, offset - limit)}`, id: 'prev' }, '← previous') : '',
      el('span', { class: 'muted', id: 'page-info' },
         `items ${total ? offset + 1 : 0}–${Math.min(offset + limit, total)} of ${fmtInt(total)}`),
      offset + limit < total ? el('a', { href: `#/selections/${enc(id)}?offset=${offset + limit}`, id: 'next' }, 'next →') : '');
  const sum = s.summary || {};
  show(el('h1', {}, 'Selection ', el('span', { id: 'selection-id' }, s.id)),
       el('p', {}, el('a', { href: '#/datasets/' + enc(s.dataset) }, '← dataset ' + s.dataset)),
       el('div', { class: 'row' },
          el('div', { class: 'card' }, kv([
            ['Name', s.display_name],
            ['Method', shortEnum(s.method, 'SELECTION_METHOD_') + ', ' + shortEnum(s.unit, 'SELECTION_UNIT_') + ' units, seed ' + s.seed],
            ['Selected', fmtInt(sum.selected_count) + ' of ' + fmtInt(sum.pool_size) + (sum.ranked ? ' (whole ranking stored)' : '')],
            ['Filtered out', fmtInt(sum.filtered_out)],
            ['Scores', 'min ' + fmtScore(sum.min_score) + ', mean ' + fmtScore(sum.mean_score) + ', max ' + fmtScore(sum.max_score)],
            ['Took', num(sum.duration_seconds).toFixed(2) + ' s']])),
          el('div', { class: 'card' }, el('h2', {}, 'Score histogram'), histogramSvg(hist),
             hist.non_finite > 0 ? el('p', { class: 'muted' }, hist.non_finite + ' infinite score(s) not drawn') : '')),
       el('h2', {}, 'Items'), pager,
       table('items-table', ['Rank#', 'Example id', 'Side', 'Score#', 'Prompt', 'Completion'], rows));
}

function curveSvg(rec) {
  const W = 640, H = 320, L = 54, B = 40, T = 14, R = 16;
  const svg = svgEl('svg', { id: 'curve', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                             role: 'img', 'aria-label': 'learning curve' });
  const pts = rec.curve || [];
  const xs = pts.map((p) => num(p.percent));
  const lo = Math.log10(Math.min(...xs, num(rec.percent) || Infinity) * 0.8);
  const hi = Math.log10(Math.max(...xs, num(rec.percent) || 0) * 1.1);
  const ys = pts.flatMap((p) => [num(p.accuracy.low), num(p.accuracy.high),
                                 p.random_pairs ? num(p.random_pairs.mean) : num(p.accuracy.accuracy)]);
  const fit = rec.fit || {};
  if (fit.r) ys.push(num(fit.r));
  const ylo = Math.max(0, Math.min(...ys) - 0.02), yhi = Math.min(1, Math.max(...ys) + 0.02);
  const X = (p) => L + (W - L - R) * (Math.log10(p) - lo) / (hi - lo || 1);
  const Y = (a) => H - B - (H - B - T) * (a - ylo) / (yhi - ylo || 1);
  svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  for (const p of xs) {
    svg.appendChild(svgEl('text', { class: 'label', x: X(p), y: H - B + 14, 'text-anchor': 'middle' }, p + '%'));
  }
  for (let k = 0; k <= 4; k++) {
    const a = ylo + (yhi - ylo) * k / 4;
    svg.appendChild(svgEl('line', { class: 'grid', x1: L, y1: Y(a), x2: W - R, y2: Y(a) }));
    svg.appendChild(svgEl('text', { class: 'label', x: L - 6, y: Y(a) + 4, 'text-anchor': 'end' }, (100 * a).toFixed(1)));
  }
  svg.appendChild(svgEl('text', { class: 'label', x: (W + L) / 2, y: H - 6, 'text-anchor': 'middle' }, 'budget (% of the pool, log scale)'));
  svg.appendChild(svgEl('text', { class: 'label', x: 12, y: (H - B + T) / 2, 'text-anchor': 'middle',
                                  transform: `rotate(-90 12 ${(H - B + T) / 2})` }, 'held-out accuracy (%)'));
  if (fit.r !== undefined && fit.b) {
    let d = '';
    for (let i = 0; i <= 80; i++) {
      const p = Math.pow(10, lo + (hi - lo) * i / 80);
      const a = num(fit.r) - (num(fit.r) - num(fit.a)) * Math.exp(-num(fit.b) * p);
      d += (i ? 'L' : 'M') + X(p).toFixed(1) + ' ' + Y(Math.max(ylo, Math.min(yhi, a))).toFixed(1);
    }
    svg.appendChild(svgEl('path', { class: 'fit', d }));
  }
  if (rec.reached && num(rec.percent) > 0) {
    const x = X(num(rec.percent));
    svg.appendChild(svgEl('line', { class: 'target', x1: x, y1: T, x2: x, y2: H - B }));
  }
  for (const p of pts) {
    const x = X(num(p.percent));
    svg.appendChild(svgEl('line', { class: 'whisker', x1: x, y1: Y(num(p.accuracy.low)), x2: x, y2: Y(num(p.accuracy.high)) }));
    const c = svgEl('circle', { class: 'point', cx: x, cy: Y(num(p.accuracy.accuracy)), r: 3.5 });
    c.appendChild(svgEl('title', {}, `${p.percent}%: ${pct(p.accuracy.accuracy)} (${fmtInt(p.examples)} rows)`));
    svg.appendChild(c);
    if (p.random_pairs) svg.appendChild(svgEl('rect', { class: 'random', x: x - 3, y: Y(num(p.random_pairs.mean)) - 3, width: 6, height: 6 }));
  }
  return svg;
}

async function operationView(id) {
  const op = await api('operations/' + enc(id));
  const m = op.metadata || {};
  const parts = [el('h1', {}, 'Operation ', el('span', { id: 'operation-id' }, id)),
                 el('p', {}, el('a', { href: '#/datasets/' + enc(m.dataset) }, '← dataset ' + m.dataset)),
                 el('table', { id: 'operations-table' }, el('tbody', {}, operationRow(op, () => route())))];
  if (op.error) parts.push(el('p', { class: 'error' }, 'Failed: ' + op.error.message));
  const rec = op.recommendation;
  if (rec) {
    const fit = rec.fit || {};
    parts.push(el('h2', {}, 'Learning curve'), curveSvg(rec),
      el('div', { class: 'card', id: 'recommendation' }, kv([
        ['Recommended budget', rec.reached
            ? `${num(rec.percent).toFixed(2)}% of the pool (${fmtInt(rec.examples)} completions)` +
              (rec.extrapolated ? ', extrapolated beyond the measured budgets' : '')
            : 'not reached: the fitted curve never reaches the target share'],
        ['Target', pct(rec.target_share) + ' of the plateau'],
        ['Scaling law', `R(x) = r − (r − a)·exp(−b·x) with r = ${num(fit.r).toFixed(4)}, a = ${num(fit.a).toFixed(4)}, b = ${num(fit.b).toFixed(4)}; R² ${num(fit.r_squared).toFixed(3)}`],
        ['Method', shortEnum(rec.method, 'SELECTION_METHOD_') + ', ' + shortEnum(rec.unit, 'SELECTION_UNIT_') + ' units'],
        ['Held-out pairs', fmtInt(rec.test_pairs) + ' (split seed ' + rec.split_seed + ')']])),
      table('curve-table', ['Budget#', 'Rows#', 'Accuracy#', '95% interval', 'Random pairs#'],
        (rec.curve || []).map((p) => el('tr', {},
          el('td', { class: 'num' }, p.percent + '%'), el('td', { class: 'num' }, fmtInt(p.examples)),
          el('td', { class: 'num' }, pct(p.accuracy.accuracy)),
          el('td', {}, pct(p.accuracy.low) + ' – ' + pct(p.accuracy.high)),
          el('td', { class: 'num' }, p.random_pairs ? pct(p.random_pairs.mean) : '')))));
  }
  if (op.evaluation) {
    const e = op.evaluation;
    parts.push(el('div', { class: 'card', id: 'evaluation' }, kv([
      ['Subset accuracy', pct(e.subset.accuracy) + ' (' + fmtInt(e.subset_examples) + ' rows)'],
      ['Random pairs', pct(e.random_pairs && e.random_pairs.mean)],
      ['Whole pool', pct(e.full && e.full.accuracy)]])));
  }
  if (op.selection) {
    parts.push(el('p', {}, 'Result: ', el('a', { href: '#/selections/' + enc(op.selection.id) }, op.selection.id)));
  }
  show(parts);
  if (!op.done) poll(() => route(), 1000);
}

async function compareView(a, b) {
  const c = await api('compare?a=' + enc(a) + '&b=' + enc(b));
  const o = c.overlap;
  const side = (s) => el('div', { class: 'card' }, el('h2', {}, el('a', { href: '#/selections/' + enc(s.id) }, s.id)), kv([
    ['Name', s.display_name], ['Dataset', s.dataset],
    ['Method', shortEnum(s.method, 'SELECTION_METHOD_') + ', ' + shortEnum(s.unit, 'SELECTION_UNIT_') + ' units'],
    ['Selected', fmtInt(s.summary.selected_count) + ' of ' + fmtInt(s.summary.pool_size)]]));
  show(el('h1', {}, 'Two selections'),
       el('div', { class: 'row' }, side(c.a), side(c.b)),
       el('div', { class: 'card', id: 'overlap' }, kv([
         ['In both', fmtInt(o.both)], ['Only in ' + c.a.id, fmtInt(o.only_a)],
         ['Only in ' + c.b.id, fmtInt(o.only_b)], ['Jaccard', num(o.jaccard).toFixed(3)],
         ['Some shared ids', o.shared_sample.join(', ')]])));
}

async function route() {
  stopPolling();
  if (!state.me) return;
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter((p) => p).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  try {
    if (parts[0] === 'datasets' && parts.length === 2) await datasetView(parts[1]);
    else if (parts[0] === 'selections' && parts.length === 2) await selectionView(parts[1], params);
    else if (parts[0] === 'operations' && parts.length === 2) await operationView(parts[1]);
    else if (parts[0] === 'compare' && parts.length === 3) await compareView(parts[1], parts[2]);
    else await datasetsView();
  } catch (err) {
    if (state.me) show(errorBox(err));
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('signin').addEventListener('submit', signIn);
  document.getElementById('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  try {
    signedIn(await api('session'));
  } catch (err) {
    showSignIn('');
  }
});
