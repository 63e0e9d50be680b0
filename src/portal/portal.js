/* Customer portal page script. Plain browser JavaScript, served as is. */
/* global document, window, location, history, sessionStorage, fetch, URLSearchParams, atob, Option, Chart */
(() => {
  'use strict';

  // The link carries the signed session in its fragment (never sent to a server); keep it for this
  // tab only and take it out of the address bar.
  const STORAGE_KEY = 'billing-portal-session';
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('session');
  if (fromLink) {
    sessionStorage.setItem(STORAGE_KEY, fromLink);
    history.replaceState(null, '', location.pathname);
  }
  const token = sessionStorage.getItem(STORAGE_KEY) || '';

  const $ = (id) => document.getElementById(id);
  const records = { page: 1, cursors: [null], next: null, filters: {} };
  let chart = null;

  function fatal(message) {
    const el = $('fatal');
    el.textContent = message;
    el.hidden = false;
  }

  async function api(path, options = {}) {
    const headers = { 'X-Portal-Session': token };
    if (options.body) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/portal/v1${path}`, { ...options, headers });
    const body = await res.json().catch(() => null);
    if (res.status === 401) {
      fatal('This portal link has expired or is not valid. Please ask for a new link.');
      throw new Error('not signed in');
    }
    if (!res.ok || !body || !body.success) throw new Error((body && body.message) || `request failed (${res.status})`);
    return body.data;
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c);
    return tr;
  }

  function describeSession() {
    try {
      const claims = JSON.parse(atob(token.split('.')[0].replace(/-/g, '+').replace(/_/g, '/')));
      $('session-note').textContent =
        `Account ${claims.u} · this link is valid until ${new Date(claims.e).toLocaleString()}`;
    } catch {
      $('session-note').textContent = '';
    }
  }

  async function loadAccount() {
    const account = await api('/account');
    $('balance').textContent = account.balance;
    $('currency').textContent = account.currency;
    $('held').textContent =
      account.heldAmount && account.heldAmount !== '0.00' ? `${account.heldAmount} held for calls in progress` : '';
    $('quota-month').textContent = account.quotas.length ? `(${account.quotas[0].period})` : '';
    $('quota-table').tBodies[0].replaceChildren(
      ...account.quotas.map((q) =>
        row([
          cell(q.serviceName),
          cell(String(q.usedQuota), 'num'),
          cell(String(q.remainingQuota), 'num'),
          cell(String(q.totalQuota), 'num'),
        ]),
      ),
    );
    const grants = account.grants || [];
    $('grants-empty').hidden = grants.length > 0;
    $('grants-table').hidden = grants.length === 0;
    $('grants-table').tBodies[0].replaceChildren(
      ...grants.map((g) =>
        row([
          cell(g.grantId),
          cell(g.category === 'paid' ? 'Paid' : 'Promotional'),
          cell(g.remaining, 'num'),
          cell(g.expiresAt ? new Date(g.expiresAt).toLocaleString() : 'Never'),
        ]),
      ),
    );
    const select = $('filter-service');
    if (select.options.length === 1)
      for (const q of account.quotas) select.add(new Option(q.serviceName, q.serviceName));
    return account;
  }

  const COLOURS = ['#0b5cad', '#d1242f', '#1a7f37', '#8250df', '#bf8700', '#57606a'];
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);

  async function loadUsage() {
    const usage = await api('/usage');
    const total = sum(usage.services.map((s) => sum(s.calls)));
    $('usage-summary').textContent =
      `${total} calls from ${usage.from} to ${usage.to}` +
      (usage.services.length ? `: ${usage.services.map((s) => `${s.serviceName} ${sum(s.calls)}`).join(', ')}` : '');
    const data = {
      labels: usage.days.map((d) => d.slice(5)),
      datasets: usage.services.map((s, i) => ({
        label: s.serviceName,
        data: s.calls,
        backgroundColor: COLOURS[i % COLOURS.length],
      })),
    };
    if (typeof Chart === 'undefined') return;
    if (chart) {
      chart.data = data;
      chart.update();
      return;
    }
    chart = new Chart($('usage-chart'), {
      type: 'bar',
      data,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  // Paging follows the service's cursor (fast at any depth); the cursors seen are kept to go back.
  async function loadRecords() {
    const query = new URLSearchParams({ page_size: '20' });
    for (const [k, v] of Object.entries(records.filters)) if (v) query.set(k, v);
    const cursor = records.cursors[records.page - 1];
    if (cursor) query.set('cursor', cursor);
    let result;
    try {
      result = await api(`/records?${query}`);
    } catch (err) {
      $('page-info').textContent = `Could not load records: ${err.message}`;
      return;
    }
    const tbody = $('records-table').tBodies[0];
    tbody.replaceChildren(
      ...result.records.map((r) =>
        row([
          cell(new Date(r.createdAt).toLocaleString()),
          cell(r.serviceName),
          cell(String(r.count), 'num'),
          cell(String(r.freeCount), 'num'),
          cell(r.amount, 'num'),
          cell(r.requestId),
        ]),
      ),
    );
    if (result.records.length === 0) {
      const empty = cell('No records');
      empty.colSpan = 6;
      tbody.replaceChildren(row([empty]));
    }
    records.next = result.nextCursor;
    const pages = Math.max(1, Math.ceil(result.total / 20));
    $('page-info').textContent = `Page ${records.page} of ${pages} (${result.total} records)`;
    $('prev-page').disabled = records.page <= 1;
    $('next-page').disabled = !records.next;
  }

  $('records-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = new window.FormData(event.target);
    records.filters = Object.fromEntries(form.entries());
    records.page = 1;
    records.cursors = [null];
    loadRecords();
  });
  $('next-page').addEventListener('click', () => {
    if (!records.next) return;
    records.cursors[records.page] = records.next;
    records.page += 1;
    loadRecords();
  });
  $('prev-page').addEventListener('click', () => {
    if (records.page <= 1) return;
    records.page -= 1;
    loadRecords();
  });

  const rechargeStatus = (text) => {
    $('recharge-status').textContent = text;
  };
  const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  async function waitForOrder(orderId) {
    const until = Date.now() + 15 * 60_000;
    while (Date.now() < until) {
      const order = await api(`/recharge/${encodeURIComponent(orderId)}`);
      if (order.status !== 'pending') return order;
      await sleep(1000);
    }
    return null;
  }

  $('recharge-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('recharge-amount');
    const amount = input.value.trim();
    if (!/^\d{1,9}(\.\d{1,2})?$/.test(amount) || Number(amount) <= 0) {
      input.setAttribute('aria-invalid', 'true');
      rechargeStatus('Enter an amount in whole cents, for example 10.00.');
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    const button = $('recharge-button');
    button.disabled = true;
    // Opened within the click, so no pop-up blocker stops it; pointed at the pay page once it exists.
    const payWindow = window.open('', '_blank');
    if (payWindow) payWindow.opener = null;
    try {
      const order = await api('/recharge', {
        method: 'POST',
        body: JSON.stringify({ amount, payment_method: $('recharge-method').value }),
      });
      $('pay-link').href = order.paymentUrl;
      $('recharge-link').hidden = false;
      if (payWindow) payWindow.location.href = order.paymentUrl;
      rechargeStatus(
        `Order ${order.orderId} for ${order.amount} ${order.currency} is waiting for your payment in the payment page.`,
      );
      const done = await waitForOrder(order.orderId);
      if (!done) rechargeStatus('The payment is still pending. This page will show it once it is paid.');
      else if (done.status === 'paid') {
        const account = await loadAccount();
        rechargeStatus(
          `Paid: ${done.amount} ${done.currency} added. Your balance is now ${account.balance} ${account.currency}.`,
        );
        $('recharge-link').hidden = true;
      } else rechargeStatus(`The payment was not completed (${done.status}).`);
    } catch (err) {
      if (payWindow) payWindow.close();
      rechargeStatus(`Recharge failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  });

  async function loadAlerts() {
    const alerts = await api('/alerts');
    $('alert-balance').value = alerts.balanceLow;
    $('alert-quota').value = String(alerts.quotaLowPercent);
    return alerts;
  }

  $('alerts-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const balance = $('alert-balance');
    const percent = $('alert-quota');
    const balanceOk = /^\d{1,12}(\.\d{1,6})?$/.test(balance.value.trim());
    const percentOk = /^\d{1,3}$/.test(percent.value) && +percent.value >= 1 && +percent.value <= 100;
    balance.toggleAttribute('aria-invalid', !balanceOk);
    percent.toggleAttribute('aria-invalid', !percentOk);
    if (!balanceOk || !percentOk) {
      $('alerts-status').textContent = !balanceOk
        ? 'Enter the threshold as an amount, e.g. 10.00.'
        : 'Enter a percentage from 1 to 100.';
      (balanceOk ? percent : balance).focus();
      return;
    }
    $('alerts-button').disabled = true;
    try {
      const saved = await api('/alerts', {
        method: 'PUT',
        body: JSON.stringify({ balance_low: balance.value.trim(), quota_low_percent: +percent.value }),
      });
      $('alerts-status').textContent =
        `Saved: alert below ${saved.balanceLow}, and at ${saved.quotaLowPercent} % of a free quota.`;
    } catch (err) {
      $('alerts-status').textContent = `Not saved: ${err.message}`;
    } finally {
      $('alerts-button').disabled = false;
    }
  });

  if (!token) {
    fatal('This page needs a portal link. Please ask for a new link.');
    return;
  }
  describeSession();
  Promise.all([loadAccount(), loadUsage(), loadRecords(), loadAlerts()]).catch(() => undefined);
})();
