// CPC Live service worker: shows Web Push notifications and opens the channel on click; keeps the app
// shell so the installed app starts offline-friendly. API calls are never cached.
const SHELL = "cpc-shell-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(["/", "/manifest.webmanifest"])));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (event.request.mode !== "navigate") return;
  // Pages: network first, the cached shell when offline.
  event.respondWith(fetch(event.request).catch(() => caches.match("/")));
});

self.addEventListener("push", (event) => {
  let data = { title: "CPC Live", url: "/" };
  try {
    data = event.data ? event.data.json() : data;
  } catch (_) {
    data = { title: event.data ? event.data.text() : "CPC Live", url: "/" };
  }
  event.waitUntil(
    self.registration.showNotification(String(data.title || "CPC Live"), {
      body: data.notification ? `${data.notification.channel_name}` : "",
      icon: "/icons/icon-192.png",
      badge: "/icons/icon-192.png",
      tag: data.notification ? `n-${data.notification.id}` : undefined,
      data: { url: typeof data.url === "string" && data.url.startsWith("/") ? data.url : "/" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = event.notification.data && event.notification.data.url ? event.notification.data.url : "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((list) => {
      for (const client of list) {
        if ("focus" in client) {
          client.navigate(target);
          return client.focus();
        }
      }
      return self.clients.openWindow(target);
    }),
  );
});
