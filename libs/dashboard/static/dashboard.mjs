// The dashboard page: renders what the server pushes over /ws. Mesh data
// (service names, identities, paths) is attacker-influenced: it only ever
// reaches the page as text (textContent, createTextNode) or attribute values
// set with setAttribute, never through an HTML-parsing sink (graph.spec.ts
// checks). The CSP forbids inline script.
const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 180;
const NODE_H = 52;
const COL_W = 440; // room between boxes for an edge label
const ROW_H = 96;
const PAD = 30;
const TOP = 90; // room for edges that skip a column and arc over the boxes
const DAY_MS = 24 * 3600 * 1000;

const state = { sections: {}, socket: 'connecting' };

/** An element with text (never parsed as HTML) and attributes. */
function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const byId = (id) => document.getElementById(id);

function note(id, section) {
  const p = byId(id);
  if (!p) return;
  const text = section && section.note ? section.note : '';
  p.textContent = text;
  p.hidden = text === '';
}

function fmtRate(r) {
  if (typeof r !== 'number') return '–';
  return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2);
}
function fmtPct(x) {
  return typeof x === 'number' ? `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)}%` : '–';
}
function fmtLeft(ms) {
  if (!Number.isFinite(ms)) return '?';
  if (ms <= 0) return 'expired';
  const d = Math.floor(ms / DAY_MS);
  const h = Math.floor((ms % DAY_MS) / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

// ------------------------------------------------------------------ graph

function renderGraph() {
  const section = state.sections.graph;
  const box = byId('graph');
  note('graph-note', section);
  const g = section && section.data;
  const meta = byId('graph-meta');
  meta.textContent = g && g.traffic ? `last ${g.windowSeconds} s · ${g.generatedAt ? new Date(g.generatedAt).toLocaleTimeString() : ''}` : '';
  const nodes = (g && Array.isArray(g.nodes) ? g.nodes : []);
  const edges = (g && Array.isArray(g.edges) ? g.edges : []);
  const rows = Math.max(1, ...nodes.map((n) => n.row + 1));
  const width = PAD * 2 + Math.max(1, g ? g.columns : 1) * COL_W;
  const height = TOP + PAD + rows * ROW_H + 20;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'service graph', 'data-testid': 'graph-svg' });
  const defs = svg('defs');
  for (const kind of ['mtls', 'plain', 'denied']) {
    const m = svg('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrowhead arrowhead-${kind}` }));
    defs.append(m);
  }
  root.append(defs);
  if (nodes.length === 0) {
    root.append(svg('text', { x: PAD, y: PAD + 20, class: 'empty' }, section && section.available ? 'no services yet' : 'waiting for the control plane'));
  }
  const pos = new Map(nodes.map((n) => [n.id, { x: PAD + n.column * COL_W, y: TOP + n.row * ROW_H, n }]));
  const edgeLayer = svg('g');
  const labelLayer = svg('g');
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const denied = e.denials > 0;
    const kind = denied ? 'denied' : e.mtls ? 'mtls' : 'plain';
    const group = svg('g', {
      class: `edge ${e.mtls ? 'mtls' : 'plain'}${denied ? ' denied' : ''}`,
      'data-testid': 'graph-edge',
      'data-from': a.n.label,
      'data-to': b.n.label,
      'data-denied': denied,
      'data-denials': e.denials,
      'data-mtls': e.mtls,
    });
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    let d;
    let lx;
    let ly;
    if (b.n.column === a.n.column + 1) {
      const c = (x2 - x1) / 2;
      d = `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2 - 6;
    } else if (b.n.column > a.n.column) {
      // skips a column: arc over the boxes in between instead of crossing them
      const lift = Math.min(a.y, b.y) - TOP + 40 + 12 * (b.n.column - a.n.column);
      const c = (x2 - x1) / 3;
      d = `M${x1},${y1} C${x1 + c},${y1 - lift * 1.3} ${x2 - c},${y2 - lift * 1.3} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2 - lift * 1.3 * 0.75 - 4;
    } else {
      // back or same-column edge: loop below the boxes
      const below = Math.max(a.y, b.y) + NODE_H + 30;
      d = `M${a.x + NODE_W / 2},${a.y + NODE_H} C${a.x + NODE_W / 2},${below} ${b.x + NODE_W / 2},${below} ${b.x + NODE_W / 2},${b.y + NODE_H}`;
      lx = (a.x + b.x + NODE_W) / 2;
      ly = below - 4;
    }
    group.append(svg('path', { d, 'marker-end': `url(#arrow-${kind})` }));
    const title = svg('title', {}, `${a.n.label} → ${b.n.label}\n${e.requests} requests, ${e.errors} errors, ${e.denials} denied\np50 ${e.p50Ms ?? '–'} ms, p99 ${e.p99Ms ?? '–'} ms\n${e.mtls ? 'mutual TLS' : 'NOT mutual TLS'} · nodes ${e.nodes.join(', ')}`);
    group.append(title);
    const label = svg('text', { x: lx, y: ly, 'text-anchor': 'middle', 'data-testid': 'edge-label' });
    label.append(svg('tspan', { x: lx, dy: 0 }, `${e.mtls ? 'mTLS · ' : '⚠ plain · '}${fmtRate(e.rps)} rps · ${fmtPct(e.errorRate)} err · p99 ${e.p99Ms === null ? '–' : `${Math.round(e.p99Ms)} ms`}`));
    if (denied) label.append(svg('tspan', { x: lx, dy: 14, 'data-testid': 'edge-denials' }, `✕ ${e.denials} denied`));
    const labelGroup = svg('g', { class: group.getAttribute('class'), 'data-testid': 'edge-label-group', 'data-from': a.n.label, 'data-to': b.n.label });
    labelGroup.append(label);
    edgeLayer.append(group);
    labelLayer.append(labelGroup);
  }
  root.append(edgeLayer);
  for (const { x, y, n } of pos.values()) {
    const group = svg('g', { class: `node ${n.kind}`, transform: `translate(${x},${y})`, 'data-testid': 'graph-node', 'data-service': n.label, 'data-kind': n.kind });
    group.append(svg('rect', { width: NODE_W, height: NODE_H, rx: 6 }));
    const name = n.label.length > 26 ? `…${n.label.slice(-25)}` : n.label;
    group.append(svg('text', { x: 10, y: 21, 'data-testid': 'node-label' }, name));
    const sub = n.kind === 'identity' ? 'identity (no service)' : `${n.namespace ?? ''}${n.instances === null ? '' : ` · ${n.healthy}/${n.instances} healthy`}`;
    group.append(svg('text', { x: 10, y: 40, class: 'small' }, sub));
    group.append(svg('title', {}, n.identity ? `${n.label}\n${n.identity}` : n.label));
    root.append(group);
  }
  root.append(labelLayer);
  box.replaceChildren(root);
}

// ------------------------------------------------------------------ tables

function fillTable(id, rows, cells, rowAttrs) {
  const body = byId(id);
  const out = [];
  for (const r of rows) {
    const tr = el('tr', rowAttrs ? rowAttrs(r) : {});
    for (const c of cells(r)) {
      const td = el('td');
      if (Array.isArray(c)) {
        td.className = 'rules';
        for (const line of c) td.append(el('div', {}, line));
      } else td.textContent = String(c ?? '');
      tr.append(td);
    }
    out.push(tr);
  }
  body.replaceChildren(...out);
}

/**
 * Highlight under 24 h left, or, for certificates that live less than three
 * days (SVIDs: 1 h by default, renewed at half-life), once under a third of
 * their lifetime is left: by then the renewal is overdue. Otherwise every
 * healthy SVID would be red all the time.
 */
function warnBefore(c) {
  const life = Date.parse(c.notAfter) - Date.parse(c.notBefore);
  return Number.isFinite(life) && life > 0 ? Math.min(DAY_MS, life / 3) : DAY_MS;
}

function renderCerts() {
  const s = state.sections.certs;
  note('certs-note', s);
  const now = Date.now();
  const rows = s && Array.isArray(s.data) ? s.data : [];
  fillTable(
    'certs',
    rows,
    (c) => [c.kind, c.name, c.node, c.notAfter ? new Date(c.notAfter).toISOString().replace('.000', '') : '?', fmtLeft(Date.parse(c.notAfter) - now), c.serial],
    (c) => {
      const left = Date.parse(c.notAfter) - now;
      return { 'data-testid': 'cert-row', 'data-kind': c.kind, class: left <= 0 ? 'expired' : left < warnBefore(c) ? 'expiring' : '' };
    },
  );
}

function renderPolicies() {
  const s = state.sections.policies;
  note('policies-note', s);
  fillTable('policies', s && Array.isArray(s.data) ? s.data : [], (p) => [p.namespace, p.name, p.action, p.target, p.rules], () => ({ 'data-testid': 'policy-row' }));
}

function renderRoutes() {
  const s = state.sections.routes;
  note('routes-note', s);
  fillTable('routes', s && Array.isArray(s.data) ? s.data : [], (r) => [r.namespace, r.name, r.service, r.rules], () => ({ 'data-testid': 'route-row' }));
}

function renderAgents() {
  const s = state.sections.agents;
  note('agents-note', s);
  const rows = s && Array.isArray(s.data) ? s.data : [];
  fillTable(
    'agents',
    rows,
    (a) => {
      const types = a && typeof a.types === 'object' && a.types ? Object.entries(a.types) : [];
      const nacks = types.filter(([, t]) => t && t.nack).map(([k, t]) => `${k} NACK: ${t.nack.error}`);
      return [a.node, a.spiffeId, a.address, a.connectedAt ? new Date(a.connectedAt).toLocaleString() : '', a.instances, nacks.length ? nacks : ['in sync']];
    },
    () => ({ 'data-testid': 'agent-row' }),
  );
}

function anomalyItem(f, fresh) {
  const li = el('li', { 'data-testid': 'anomaly', 'data-kind': f.kind ?? '', class: fresh ? 'fresh' : '' });
  li.append(el('time', {}, f.at ? new Date(f.at).toLocaleTimeString() : ''));
  li.append(el('span', { class: 'kind' }, f.kind ?? '?'));
  li.append(document.createTextNode(f.message ?? ''));
  return li;
}

function renderAnomalies() {
  const s = state.sections.anomalies;
  note('anomalies-note', s);
  const list = s && Array.isArray(s.data) ? s.data : [];
  byId('anomalies-meta').textContent = `${list.length}`;
  byId('anomalies').replaceChildren(...list.map((f) => anomalyItem(f, false)));
}

function addAnomaly(f) {
  const s = (state.sections.anomalies ??= { available: true, data: [] });
  if (!Array.isArray(s.data)) s.data = [];
  if (s.data.some((x) => x.id === f.id)) return;
  s.data.unshift(f);
  s.data.length = Math.min(s.data.length, 200);
  const ol = byId('anomalies');
  ol.prepend(anomalyItem(f, true));
  while (ol.children.length > 200) ol.lastElementChild.remove();
  byId('anomalies-meta').textContent = `${s.data.length}`;
}

function renderConnection() {
  const c = state.sections.connection && state.sections.connection.data;
  const box = byId('connection');
  let st;
  let text;
  if (state.socket !== 'open') {
    st = state.socket === 'connecting' ? 'connecting' : 'disconnected';
    text = state.socket === 'connecting' ? 'connecting to the dashboard…' : 'dashboard server unreachable: retrying';
  } else if (!c || c.controlPlane === 'waiting') {
    st = 'waiting';
    text = c ? c.message : 'waiting';
  } else if (c.controlPlane === 'unreachable') {
    st = 'unreachable';
    text = c.message;
  } else {
    st = 'live';
    text = `live · ${c.url ?? 'control plane'}`;
  }
  box.dataset.state = st;
  box.className = `conn ${st === 'live' ? 'conn-ok' : st === 'waiting' || st === 'connecting' ? 'conn-waiting' : 'conn-bad'}`;
  byId('connection-text').textContent = text;
}

const RENDER = { graph: renderGraph, certs: renderCerts, policies: renderPolicies, routes: renderRoutes, agents: renderAgents, anomalies: renderAnomalies, connection: renderConnection };

// ------------------------------------------------------------------ socket

let retryMs = 500;
function connect() {
  state.socket = 'connecting';
  renderConnection();
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.addEventListener('open', () => {
    state.socket = 'open';
    retryMs = 500;
    renderConnection();
  });
  ws.addEventListener('message', (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (msg.type === 'state' && msg.sections) {
      state.sections = msg.sections;
      for (const render of Object.values(RENDER)) render();
    } else if (msg.type === 'section' && Object.hasOwn(RENDER, msg.name)) {
      state.sections[msg.name] = msg.section;
      RENDER[msg.name]();
    } else if (msg.type === 'anomaly' && msg.finding) {
      addAnomaly(msg.finding);
    }
  });
  ws.addEventListener('close', () => {
    state.socket = 'closed';
    renderConnection();
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  });
}

connect();
setInterval(renderCerts, 30_000); // time left moves on
