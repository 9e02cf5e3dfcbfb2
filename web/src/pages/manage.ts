// Dashboard cards that manage the channel: branding images, emotes, moderators and VIPs, blocked terms.
import { api, enc, imageUrl, raw, type Channel } from "../api";
import { clear, field, h, toast } from "../dom";

async function upload(url: string, method: string, file: File): Promise<void> {
  await raw(url, { method, body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
}

export function brandingCard(c: Channel): HTMLElement {
  const card = h("section", { class: "card" }, h("h2", {}, "Avatar and banner"));
  for (const kind of ["avatar", "banner"] as const) {
    const current = imageUrl(c, kind);
    const preview = h("img", { class: `preview-${kind}`, src: current ?? "", alt: `Current ${kind}`, hidden: !current });
    const input = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp" });
    input.addEventListener("change", async () => {
      const file = input.files?.[0];
      if (!file) return;
      try {
        await upload(`/api/v1/channels/${enc(c.name)}/${kind}`, "PUT", file);
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
        toast(`${kind === "avatar" ? "Avatar" : "Banner"} updated.`);
      } catch (err) {
        toast((err as Error).message, "error");
      }
    });
    card.append(field(kind === "avatar" ? "Avatar (PNG, JPEG or WebP)" : "Banner (PNG, JPEG or WebP)", input), preview);
  }
  return card;
}

interface Emote {
  code: string;
  tier: number;
  urls: Record<string, string>;
}

export function emotesCard(c: Channel): HTMLElement {
  const list = h("ul", { class: "emote-list" });
  const code = h("input", { name: "code", pattern: "[A-Za-z][A-Za-z0-9]{2,24}", required: true });
  const tier = h("select", {}, ["Everyone", "Tier 1", "Tier 2", "Tier 3"].map((label, i) => h("option", { value: String(i) }, label)));
  const file = h("input", { type: "file", accept: "image/png,image/gif,image/webp", required: true });
  const load = async (): Promise<void> => {
    const r = await api<{ items: Emote[] }>(`/api/v1/channels/${enc(c.name)}/emotes`).catch(() => ({ items: [] as Emote[] }));
    clear(list);
    for (const e of r.items) {
      const remove = h("button", { type: "button", class: "small", "aria-label": `Delete emote ${e.code}` }, "Delete");
      remove.addEventListener("click", async () => {
        await api(`/api/v1/channels/${enc(c.name)}/emotes/${enc(e.code)}`, "DELETE");
        void load();
      });
      list.append(h("li", {}, h("img", { src: e.urls["2x"], alt: "", width: 28, height: 28 }), h("span", {}, e.code), e.tier ? h("span", { class: "muted" }, `tier ${e.tier}`) : null, remove));
    }
  };
  const form = h("form", { class: "card" }, h("h2", {}, "Emotes"), list, field("Code", code, "3-25 letters and digits, starting with a letter."), field("Who may use it", tier), field("Image (PNG, GIF or WebP)", file), h("button", { type: "submit" }, "Add emote"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = file.files?.[0];
    if (!f) return;
    try {
      await upload(`/api/v1/channels/${enc(c.name)}/emotes?code=${enc(code.value.trim())}&tier=${tier.value}`, "POST", f);
      toast(`Emote ${code.value} added.`);
      form.reset();
      void load();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  });
  void load();
  return form;
}

export function rolesCard(c: Channel): HTMLElement {
  const card = h("section", { class: "card" }, h("h2", {}, "Moderators and VIPs"));
  for (const [segment, label] of [["moderators", "Moderators"], ["vips", "VIPs"]] as const) {
    const list = h("ul", { class: "people" });
    const who = h("input", { name: `${segment}-user`, autocomplete: "off" });
    const load = async (): Promise<void> => {
      const r = await api<{ items: { username: string }[] }>(`/api/v1/channels/${enc(c.name)}/${segment}`);
      clear(list);
      if (!r.items.length) list.append(h("li", { class: "muted" }, "None yet."));
      for (const m of r.items) {
        const remove = h("button", { type: "button", class: "small", "aria-label": `Remove ${m.username} from ${label}` }, "Remove");
        remove.addEventListener("click", async () => {
          await api(`/api/v1/channels/${enc(c.name)}/${segment}/${enc(m.username)}`, "DELETE");
          void load();
        });
        list.append(h("li", {}, m.username, " ", remove));
      }
    };
    const form = h("form", { class: "inline-form" }, field(`Add to ${label}`, who), h("button", { type: "submit" }, "Add"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api(`/api/v1/channels/${enc(c.name)}/${segment}/${enc(who.value.trim())}`, "PUT");
        who.value = "";
        void load();
      } catch (err) {
        toast((err as Error).message, "error");
      }
    });
    card.append(h("h3", {}, label), list, form);
    void load();
  }
  return card;
}

export function termsCard(c: Channel): HTMLElement {
  const list = h("ul", { class: "people" });
  const term = h("input", { name: "term", autocomplete: "off" });
  const moderate = (action: string, target: string): Promise<unknown> => api(`/api/v1/channels/${enc(c.name)}/chat/moderation`, "POST", { action, target });
  const load = async (): Promise<void> => {
    const r = await api<{ items: { term: string }[] }>(`/api/v1/channels/${enc(c.name)}/chat/blocked-terms`).catch(() => ({ items: [] as { term: string }[] }));
    clear(list);
    for (const t of r.items) {
      const remove = h("button", { type: "button", class: "small", "aria-label": `Unblock ${t.term}` }, "Remove");
      remove.addEventListener("click", async () => {
        await moderate("unblock", t.term);
        void load();
      });
      list.append(h("li", {}, t.term, " ", remove));
    }
  };
  const form = h("form", { class: "card" }, h("h2", {}, "Blocked terms"), h("p", { class: "muted" }, "Chat lines containing these are refused."), list, field("Block a term", term), h("button", { type: "submit" }, "Block"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await moderate("block", term.value.trim());
      term.value = "";
      void load();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  });
  void load();
  return form;
}
