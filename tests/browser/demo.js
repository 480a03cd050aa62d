// Drives Debian's Chromium (headless, through playwright-core) through tinyserve's pages:
// the model list, the iris form (prediction and a server error), the bytelm chat (streamed
// answer), the tinyembed comparison and the API docs. Prints one "ok ..." line per check and
// "all checks passed"; exits 1 on the first failed check. Screenshots go to OUT_DIR.
//
// usage: node demo.js BASE_URL OUT_DIR      (BASE_URL such as http://127.0.0.1:PORT/api)
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node demo.js BASE_URL OUT_DIR");
  process.exit(2);
}
const origin = new URL(base).origin;
const problems = [];

function check(condition, what, detail) {
  if (!condition) throw new Error(`FAIL ${what}${detail === undefined ? "" : `: ${detail}`}`);
  console.log(`ok    ${what}`);
}

async function shot(page, name) {
  const file = path.join(outDir, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`saved ${file}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    page.setDefaultTimeout(60000);
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    // Failed requests are logged as console errors too: the 400 below is expected.
    page.on("console", (msg) => msg.type() === "error" && !msg.text().startsWith("Failed to load resource")
      && problems.push(`console: ${msg.text()}`));
    // The pages must be self-contained: any request to another origin is refused and counted.
    const external = [];
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin)) return route.continue();
      external.push(url);
      return route.abort();
    });

    // The list of models.
    await page.goto(`${base}/`);
    const links = await page.$$eval("a.model", (as) => as.map((a) => a.getAttribute("href")));
    const prefix = new URL(base).pathname.replace(/\/$/, "");
    check(links.includes(`${prefix}/models/iris`) && links.includes(`${prefix}/models/bytelm`),
      "the index links to the iris and bytelm demos under the root path", links.join(", "));
    check(links.includes(`${prefix}/models/tinychat`) && links.includes(`${prefix}/models/tinyembed`),
      "the index links to the decoder and encoder folders' demos", links.join(", "));
    await shot(page, "index.png");

    // The iris form: pre-filled, predicts, draws the class probabilities.
    await page.goto(`${base}/models/iris`);
    const example = await page.inputValue("#input-input");
    check(JSON.stringify(JSON.parse(example)) === "[[5.1,3.5,1.4,0.2]]",
      "the iris form is pre-filled with the example", example);
    await page.click("#run");
    await page.waitForSelector("#result:not([hidden]) .bars");
    const top = await page.getAttribute(".bars", "data-top");
    const bars = await page.$$eval(".bars .bar", (rows) => rows.map((r) => r.textContent));
    const label = await page.textContent("#output-label pre");
    check(top === "0" && label === "[0]", "iris predicts label 0 (setosa)", `top ${top}, label ${label}`);
    check(bars.length === 3 && /^class 0\s*(9\d|100)\.\d%$/.test(bars[0].trim()),
      "the probabilities are drawn as 3 bars, class 0 above 90%", bars.join(" | "));
    await shot(page, "iris.png");

    // A server error is shown with its message.
    await page.fill("#input-input", "[[1, 2, 3]]");
    await page.click("#run");
    await page.waitForSelector("#error:not([hidden])");
    const error = await page.textContent("#error");
    check(error.includes("400 invalid_input") && error.includes("expected shape [-1, 4], got [1, 3]"),
      "a wrong shape shows the server's error message", error);
    await shot(page, "iris-error.png");

    // The bytelm chat: the answer streams in.
    await page.goto(`${base}/models/bytelm`);
    await page.evaluate(() => {
      window.lengths = [];
      new MutationObserver(() => {
        const text = document.querySelector(".msg.assistant .text");
        if (text) window.lengths.push(text.textContent.length);
      }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
    });
    await page.fill("#message", "What is a class?");
    await page.fill("#max-tokens", "200");
    await page.click("#send");
    await page.waitForSelector(".msg.assistant[data-state=done], .msg.assistant[data-state=failed]", { timeout: 120000 });
    const state = await page.getAttribute(".msg.assistant", "data-state");
    const answer = await page.textContent(".msg.assistant .text");
    const pieces = Number(await page.getAttribute(".msg.assistant", "data-pieces"));
    const lengths = await page.evaluate(() => window.lengths);
    const distinct = new Set(lengths.filter((n) => n > 0)).size;
    check(state === "done" && answer.trim().length > 0, "the chat answer is non-empty",
      `state ${state}, error ${await page.textContent("#error")}`);
    check(pieces > 1 && distinct > 1, "the answer grew piece by piece while streaming",
      `${pieces} pieces, text lengths seen: ${lengths.join(",")}`);
    console.log(`      ${pieces} pieces; lengths seen ${lengths.slice(0, 12).join(",")}...; answer ${JSON.stringify(answer.slice(0, 80))}`);
    await shot(page, "chat.png");

    // The encoder folder's demo: one vector per line, each line most similar to itself.
    await page.goto(`${base}/models/tinyembed`);
    await page.click("#embed");
    await page.waitForSelector("#result:not([hidden]) #similarity td");
    const cells = await page.$$eval("#similarity td", (tds) => tds.map((td) => Number(td.textContent)));
    const vectors = await page.$$eval("#vectors .output", (rows) => rows.length);
    check(cells.length === 9 && [0, 4, 8].every((i) => Math.abs(cells[i] - 1) < 0.001) && vectors === 3,
      "the tinyembed demo embeds 3 texts and compares them", cells.join(","));
    await shot(page, "embed.png");

    // The API docs, rendered from openapi.json.
    await page.goto(`${base}/docs`);
    await page.waitForSelector("details.op");
    await page.click("#post_models_iris_predict > summary");
    const docText = await page.textContent("#doc");
    check(docText.includes("/models/iris/predict") && docText.includes("/v2/models/iris/infer") &&
      docText.includes("[[5.1,3.5,1.4,0.2]]"), "the docs page lists the per-model routes with the example");
    await shot(page, "docs.png");

    check(external.length === 0, "no request left the server's origin", external.join(", "));
    check(problems.length === 0, "no script error or console error", problems.join("; "));
  } finally {
    await browser.close();
  }
}

main().then(
  () => console.log("all checks passed"),
  (err) => {
    console.log(err.message);
    if (problems.length) console.log(`page problems: ${problems.join("; ")}`);
    process.exit(1);
  },
);
