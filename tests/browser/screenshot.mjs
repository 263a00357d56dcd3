// Opens a page of cara's in Debian's chromium, headless, through playwright-core,
// takes a full-page screenshot and prints what the tests assert on, as JSON:
// the page's title, its tables' ids, and per inline SVG plot its id (or its
// parent's), its rendered size and how many shapes it drew. Console errors, page
// errors and failed requests are printed too, and make the exit status 1.
//
//   node tests/browser/screenshot.mjs PAGE.html SCREENSHOT.png
//
// CHROMIUM names the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [page_file, screenshot] = process.argv.slice(2);
if (!page_file || !screenshot) {
  console.error("usage: node screenshot.mjs PAGE.html SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  page.on("requestfailed", (r) => errors.push(`request: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(pathToFileURL(path.resolve(page_file)).href, { waitUntil: "load" });
  await page.screenshot({ path: screenshot, fullPage: true });
  const seen = await page.evaluate(() => ({
    title: document.title,
    tables: [...document.querySelectorAll("table")].map((t) => t.id),
    plots: [...document.querySelectorAll("svg")].map((svg) => {
      const box = svg.getBoundingClientRect();
      return {
        id: svg.id || svg.parentElement?.id || svg.parentElement?.className || "",
        width: Math.round(box.width),
        height: Math.round(box.height),
        shapes: svg.querySelectorAll("polyline, rect, path, circle").length,
        lines: [...svg.querySelectorAll("polyline")].filter(
          (l) => (l.getAttribute("points") || "").trim().split(/\s+/).length > 20,
        ).length,
      };
    }),
  }));
  console.log(JSON.stringify({ ...seen, errors }));
} finally {
  await browser.close();
}
process.exit(errors.length > 0 ? 1 : 0);
