import { api, enc, imageUrl, type Channel } from "../api";
import { clear, field, h } from "../dom";

interface Page {
  items: Channel[];
  next_cursor: string | null;
}

async function viewers(name: string): Promise<number | null> {
  try {
    return (await api<{ viewers: number }>(`/api/v1/channels/${enc(name)}/viewers`)).viewers;
  } catch {
    return null;
  }
}

function card(c: Channel): HTMLElement {
  const avatar = imageUrl(c, "avatar");
  const banner = imageUrl(c, "banner");
  const thumb = h(
    "div",
    { class: "thumb" },
    banner ? h("img", { src: banner, alt: "", loading: "lazy" }) : h("div", { class: "thumb-empty", "aria-hidden": "true" }, c.name.slice(0, 1).toUpperCase()),
    c.live ? h("span", { class: "live-pill" }, "LIVE") : null,
  );
  const count = h("span", { class: "viewers" });
  if (c.live) {
    void viewers(c.name).then((n) => {
      if (n !== null) count.textContent = `${n} watching`;
    });
  }
  return h(
    "li",
    { class: "channel-card" },
    h(
      "a",
      { href: `/${enc(c.name)}`, "data-link": true },
      thumb,
      h(
        "div",
        { class: "card-body" },
        avatar ? h("img", { class: "avatar", src: avatar, alt: "", width: 40, height: 40 }) : h("span", { class: "avatar avatar-empty", "aria-hidden": "true" }),
        h("div", {}, h("strong", { class: "card-title" }, c.title), h("span", { class: "muted" }, c.name), h("span", { class: "muted" }, c.category), count),
      ),
    ),
  );
}

export function directoryPage(main: HTMLElement): void {
  const params = new URLSearchParams(location.search);
  const q = h("input", { type: "search", name: "q", value: params.get("q") ?? "", placeholder: "Title, channel or tag" });
  const category = h("input", { name: "category", value: params.get("category") ?? "", placeholder: "Any" });
  const grid = h("ul", { class: "grid", "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true }, "Show more");
  let cursor = "";

  const load = async (reset: boolean): Promise<void> => {
    const query = new URLSearchParams({ limit: "24" });
    if (q.value.trim()) query.set("q", q.value.trim());
    if (category.value.trim()) query.set("category", category.value.trim());
    if (!reset && cursor) query.set("cursor", cursor);
    const page = await api<Page>(`/api/v1/channels?${query}`);
    if (reset) clear(grid);
    if (reset && !page.items.length) grid.append(h("li", { class: "muted" }, "No channels match."));
    page.items.forEach((c) => grid.append(card(c)));
    cursor = page.next_cursor ?? "";
    more.hidden = !cursor;
  };
  const form = h(
    "form",
    { class: "search", role: "search" },
    field("Search", q),
    field("Category", category),
    h("button", { type: "submit" }, "Search"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (q.value.trim()) query.set("q", q.value.trim());
    if (category.value.trim()) query.set("category", category.value.trim());
    history.replaceState(null, "", query.size ? `/?${query}` : "/");
    void load(true);
  });
  more.addEventListener("click", () => void load(false));
  main.append(h("h1", {}, "Live channels"), form, grid, more);
  void load(true);
}
