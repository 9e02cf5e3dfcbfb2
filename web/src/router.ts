// History-API router: links with data-link navigate without a reload; focus moves to the new page's
// heading so keyboard and screen reader users land on it.

export type Page = (main: HTMLElement, params: Record<string, string>) => void | (() => void) | Promise<void | (() => void)>;

interface Route {
  pattern: RegExp;
  keys: string[];
  page: Page;
}

const routes: Route[] = [];
let cleanup: (() => void) | void = undefined;
let first = true;

export function route(path: string, page: Page): void {
  const keys: string[] = [];
  const pattern = new RegExp(
    "^" + path.replace(/:(\w+)/g, (_, key: string) => (keys.push(key), "([^/]+)")) + "/?$",
  );
  routes.push({ pattern, keys, page });
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

export async function render(): Promise<void> {
  const main = document.getElementById("main")!;
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  main.replaceChildren();
  for (const r of routes) {
    const m = location.pathname.match(r.pattern);
    if (!m) continue;
    const params: Record<string, string> = {};
    r.keys.forEach((key, i) => (params[key] = decodeURIComponent(m[i + 1])));
    cleanup = await r.page(main, params);
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      // On a fresh load the skip link stays the first stop; after in-app navigation focus lands here.
      if (!first) heading.focus({ preventScroll: true });
      document.title = `${heading.textContent} · CPC Live`;
    }
    first = false;
    return;
  }
}

export function startRouter(): void {
  document.addEventListener("click", (event) => {
    const a = (event.target as Element).closest("a[data-link]") as HTMLAnchorElement | null;
    if (!a || event.ctrlKey || event.metaKey || event.shiftKey || a.target) return;
    event.preventDefault();
    navigate(a.getAttribute("href")!);
  });
  window.addEventListener("popstate", () => void render());
  void render();
}
