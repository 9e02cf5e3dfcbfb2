import "./style.css";
import { session, signOut } from "./api";
import { bell } from "./bell";
import { h } from "./dom";
import { channelPage } from "./pages/channel";
import { dashboardPage } from "./pages/dashboard";
import { directoryPage } from "./pages/directory";
import { signInPage, signUpPage } from "./pages/auth";
import { settingsPage } from "./pages/settings";
import { navigate, render, route, startRouter } from "./router";

let stopBell: (() => void) | null = null;

function header(): void {
  const top = document.getElementById("top")!;
  stopBell?.();
  stopBell = null;
  const user = session.user;
  const nav = h("nav", { "aria-label": "Main" }, h("a", { href: "/", "data-link": true, class: "brand" }, "CPC Live"));
  const right = h("div", { class: "nav-right" });
  if (user) {
    const b = bell();
    stopBell = b.stop;
    right.append(
      h("a", { href: "/dashboard", "data-link": true }, "Dashboard"),
      b.el,
      h("a", { href: "/settings", "data-link": true, "aria-label": `Settings for ${user}` }, user),
      h(
        "button",
        {
          class: "link-button",
          onclick: async () => {
            await signOut();
            navigate("/");
          },
        },
        "Sign out",
      ),
    );
  } else {
    right.append(
      h("a", { href: "/signin", "data-link": true }, "Sign in"),
      h("a", { href: "/signup", "data-link": true, class: "button" }, "Sign up"),
    );
  }
  nav.append(right);
  top.replaceChildren(nav);
}

route("/", directoryPage);
route("/signin", signInPage);
route("/signup", signUpPage);
route("/dashboard", dashboardPage);
route("/settings", settingsPage);
route("/:name", channelPage);

session.onChange(() => {
  header();
});
header();
startRouter();
window.addEventListener("cpc:rerender", () => void render());

if ("serviceWorker" in navigator) {
  void navigator.serviceWorker.register("/sw.js", { scope: "/" });
}
