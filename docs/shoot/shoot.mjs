// Usage: node shoot.mjs FILE URL [TEXT]
// Opens URL in Debian's headless Chromium, waits until TEXT shows (or the
// page settles), and writes a 1600x900 screenshot to FILE.
import { chromium } from 'playwright-core';

const [file, url, text] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
  if (text) {
    await page.getByText(text, { exact: false }).first().waitFor({ timeout: 30000 });
  }
  await page.waitForTimeout(3000);
  await page.screenshot({ path: file });
  console.log(`wrote ${file}`);
} finally {
  await browser.close();
}
