// The web console end to end in headless Chromium, driven by Playwright,
// against a real gateway and PostgreSQL that crates/airlock/tests/console.rs
// started. Two people in two browser contexts: the on-call engineer requests
// write access, the SRE lead approves it from the requests inbox, and the
// requester sees the grant and its countdown without reloading; then the
// timeline, a session replay and every other page. A screenshot of each page
// goes to $SCREENSHOTS. Exits non-zero on the first failed check.
//
// Environment: AIRLOCK_URL, ONCALL_TOKEN, LEAD_TOKEN, SCREENSHOTS,
// SECRETS (comma-separated strings that must never appear: upstream
// passwords), CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.AIRLOCK_URL;
const shots = process.env.SCREENSHOTS;
const secrets = (process.env.SECRETS || "").split(",").filter(Boolean);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // The machine's network is closed: no background connections, no sandbox as root.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

const problems = [];
/** A person in their own browser context (cookies, storage: nothing shared). */
async function person(name, viewport) {
  // The gateway's certificate is signed by its own CA, which this throwaway
  // browser does not hold; TLS is still used end to end.
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const origin = new URL(base).origin;
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) problems.push(`${name}: request to another host: ${r.url()}`);
  });
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame() && /alk_/.test(f.url())) problems.push(`${name}: a token in the URL: ${f.url()}`);
  });
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser logs every failed fetch; the one 401 expected is the wrong
    // token tried on purpose below (a flow that failed otherwise would stop
    // the test at its own check).
    if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`${name}: console error: ${m.text()} at ${JSON.stringify(m.location())}`);
  });
  return page;
}

async function shot(page, name) {
  // No page ever shows an upstream password.
  const text = await page.evaluate(() => document.body.innerText);
  for (const s of secrets) assert.ok(!text.includes(s), `${name}: an upstream password is on the page`);
  assert.ok(!/alk_[A-Za-z0-9_-]{10,}/.test(page.url()), `${name}: a token in the URL`);
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signIn(page, token, who) {
  await page.goto(base + "/");
  await page.getByLabel("API token").waitFor();
  await shot(page, `01-sign-in-${who}`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My access" }).waitFor();
}

// --- The on-call engineer: their access, then a request for write access.
const oncall = await person("oncall1", { width: 1280, height: 800 });
// A wrong token is refused with a reason, and nothing is stored.
await oncall.goto(base + "/");
await oncall.getByLabel("API token").fill("alk_not-a-real-token");
await oncall.getByRole("button", { name: "Sign in" }).click();
await oncall.getByText("that token was not accepted").waitFor();
await signIn(oncall, process.env.ONCALL_TOKEN, "oncall");
const orders = oncall.getByRole("region", { name: "Access to orders" });
await orders.getByText("standing").waitFor();
await orders.getByText("requestable").waitFor();
await orders.getByText("break-glass").waitFor();
await shot(oncall, "02-my-access");

// Connect: a session credential with a psql command and a copy button.
await oncall.getByRole("button", { name: "Get a credential" }).click();
await oncall.getByText("psql command").waitFor();
const psql = await oncall.getByLabel("psql command", { exact: true }).innerText();
assert.match(psql, /^psql 'postgresql:\/\/oncall1:[^@]+@[^/]+\/orders\?sslmode=verify-full/);
assert.ok(await oncall.getByRole("button", { name: "Copy psql command" }).isVisible());
await shot(oncall, "03-connect");

// Request write access.
await oncall.getByLabel("Reason", { exact: true }).fill("INC-1 console e2e");
await oncall.getByLabel("For", { exact: true }).fill("30m");
await oncall.getByRole("button", { name: "Request access" }).click();
const filed = await oncall.getByText(/^Request req_\S+ filed/).innerText();
const requestId = filed.match(/req_\S+/)[0];
await shot(oncall, "04-requested");

// --- The approver, in a second context, on a phone-sized screen.
const lead = await person("lead1", { width: 390, height: 844 });
await signIn(lead, process.env.LEAD_TOKEN, "lead");
await lead.getByRole("link", { name: /Requests/ }).click();
const card = lead.getByRole("article", { name: `Request ${requestId}` });
await card.waitFor();
assert.ok((await card.innerText()).includes("oncall1"));
assert.ok((await card.innerText()).includes("INC-1 console e2e"));
await shot(lead, "05-inbox-phone");
await card.getByLabel("Comment (required to deny)").fill("ok, go");
await card.getByRole("button", { name: "Approve" }).click();
await lead.getByText(`Approved write access to orders for 30m for oncall1 (${requestId}).`).waitFor();
await shot(lead, "06-approved-phone");
// The lead is an auditor: verify the log from the Audit page.
await lead.getByRole("link", { name: "Audit", exact: true }).click();
await lead.getByRole("button", { name: "Verify the log" }).click();
await lead.getByText("intact").waitFor();
assert.ok(await lead.getByText("Last checkpoint").isVisible());
await shot(lead, "06b-audit-verify-phone");

// --- The requester sees the grant and its countdown, without reloading.
const countdown = oncall.getByRole("region", { name: "Access to orders" }).locator(".countdown");
await countdown.waitFor({ timeout: 20000 });
const first = await countdown.innerText();
assert.match(first, /^(29|30)m \d\ds left$/);
await oncall.waitForTimeout(2100);
const second = await countdown.innerText();
assert.notEqual(first, second, "the countdown moves");
await shot(oncall, "07-grant-countdown");

// --- The timeline: the ingested span, the deploy marker and the access
// events, in time order.
await oncall.getByRole("link", { name: "Timeline" }).click();
await oncall.getByRole("heading", { name: "Timeline" }).waitFor();
const items = oncall.locator("ol.events > li");
await items.first().waitFor();
const rows = await items.evaluateAll((lis) => lis.map((li) => ({ kind: li.dataset.kind, text: li.innerText })));
const at = (pred, what) => {
  const i = rows.findIndex(pred);
  assert.ok(i >= 0, `${what} on the timeline: ${JSON.stringify(rows.slice(0, 40))}`);
  return i;
};
const deploy = at((r) => r.kind === "deploy" && r.text.includes("checkout"), "the deploy marker");
const span = at((r) => r.kind === "span" && r.text.includes("GET /cart"), "the span");
const session = at((r) => r.kind === "access" && r.text.includes("session_start"), "the session start");
const approved = at((r) => r.kind === "access" && r.text.includes("request.approved"), "the approval");
assert.ok(deploy < span && span < session && session < approved, `order: deploy ${deploy}, span ${span}, session ${session}, approval ${approved}`);
assert.ok(await oncall.locator(".chart svg line.deploy").count() >= 1, "a deploy marker on the chart");
await shot(oncall, "08-timeline");

// The span opens its trace's waterfall.
await items.nth(span).getByRole("link", { name: "trace" }).click();
await oncall.getByRole("heading", { name: /^Trace / }).waitFor();
await oncall.getByText("checkout@v2").first().waitFor();
await shot(oncall, "09-trace");

// The session opens its replay: the statements.
await oncall.goBack();
await oncall.locator("ol.events > li").first().waitFor();
await oncall.locator("ol.events > li").nth(session).getByRole("link", { name: "replay" }).click();
await oncall.getByRole("heading", { name: /^Session / }).waitFor();
await oncall.getByText("SELECT count(*) FROM orders").first().waitFor();
// A control character in a statement is rendered visibly, never raw.
const badge = oncall.locator("pre .ctl", { hasText: "\\x1b" }).first();
await badge.waitFor();
assert.equal(await badge.getAttribute("title"), "U+001B");
assert.ok((await badge.locator("xpath=ancestor::pre").innerText()).includes("SELECT 'paint \\x1b[31mred' AS painted"));
assert.ok(!(await oncall.locator("main").innerText()).includes("\x1b"), "no raw ESC on the page");
await shot(oncall, "10-replay");

// Every other page loads without an error.
for (const [link, heading, name] of [
  ["Sessions", "Sessions", "11-sessions"],
  ["Compare", "Compare versions", "12-compare"],
  ["Audit", "Audit", "13-audit"],
  ["Runbooks", "Runbooks", "14-runbooks"],
]) {
  await oncall.getByRole("link", { name: link, exact: true }).click();
  await oncall.getByRole("heading", { name: heading }).waitFor();
  await oncall.waitForTimeout(300);
  assert.equal(await oncall.locator(".error-box").count(), 0, `${link}: ${await oncall.locator(".error-box").allInnerTexts()}`);
  await shot(oncall, name);
}
// A runbook from its form: the run's output streams onto the page.
await oncall.getByRole("link", { name: "Runbooks", exact: true }).click();
const greet = oncall.getByRole("article", { name: "Runbook greet" });
await greet.getByLabel(/^who/).fill("on call");
await greet.getByRole("button", { name: "Run", exact: true }).click();
await greet.getByText("hello, on call").waitFor();
await greet.getByText(/^Run ok in \d+ ms$/).waitFor();
await shot(oncall, "16-runbook-run");

// Filters go through the address (no token there): compare two versions.
await oncall.getByRole("link", { name: "Compare", exact: true }).click();
await oncall.getByRole("heading", { name: "Compare versions" }).waitFor();
await oncall.getByLabel("Service", { exact: true }).fill("checkout");
await oncall.getByLabel("From version", { exact: true }).fill("v1");
await oncall.getByLabel("To version", { exact: true }).fill("v2");
await oncall.getByRole("button", { name: "Compare", exact: true }).click();
await oncall.getByRole("table", { name: "Side by side" }).waitFor();
assert.ok((await oncall.getByRole("table", { name: "Side by side" }).innerText()).includes("12.00ms"), "v2's one request of 12 ms");
await shot(oncall, "15-compare-v1-v2");

// Keyboard: from the top, Tab reaches the skip link, then the sections;
// Enter opens one.
await oncall.goto(base + "/#/access");
await oncall.reload(); // a fresh document: focus starts at the top
await oncall.getByRole("heading", { name: "My access" }).waitFor();
const focusedText = () => oncall.evaluate(() => document.activeElement && document.activeElement.textContent.trim());
await oncall.keyboard.press("Tab");
assert.equal(await focusedText(), "Skip to content");
await oncall.keyboard.press("Tab");
assert.equal(await focusedText(), "My access");
await oncall.keyboard.press("Tab");
assert.match(await focusedText(), /^Requests/);
await oncall.keyboard.press("Enter");
await oncall.getByRole("heading", { name: "Requests", exact: true }).waitFor();

// Sign out forgets the token.
await oncall.getByRole("button", { name: "Sign out" }).click();
await oncall.getByLabel("API token").waitFor();
assert.equal(await oncall.evaluate(() => sessionStorage.length), 0);

// Dark theme follows the system.
const dark = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "dark", ignoreHTTPSErrors: true });
const night = await dark.newPage();
await night.goto(base + "/");
await night.getByLabel("API token").fill(process.env.LEAD_TOKEN);
await night.getByRole("button", { name: "Sign in" }).click();
await night.getByRole("heading", { name: "My access" }).waitFor();
const bg = await night.evaluate(() => getComputedStyle(document.body).backgroundColor);
assert.equal(bg, "rgb(18, 19, 23)", "the dark palette");
await shot(night, "17-dark-my-access");

await browser.close();
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`console e2e: ok (request ${requestId}); screenshots in ${shots}`);
