import { api, ApiError, signIn } from "../api";
import { field, h } from "../dom";
import { navigate } from "../router";

function errorBox(): HTMLElement {
  return h("p", { class: "form-error", role: "alert", hidden: true });
}

function showError(box: HTMLElement, err: unknown): void {
  box.textContent = err instanceof ApiError ? err.message : "Something went wrong, try again.";
  box.hidden = false;
}

export function signUpPage(main: HTMLElement): void {
  const username = h("input", { name: "username", autocomplete: "username", required: true, minlength: 3, maxlength: 25 });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 10 });
  const error = errorBox();
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signup-title" },
    h("h1", { id: "signup-title" }, "Create your account"),
    error,
    field("Username", username, "3-25 letters, digits or underscores."),
    field("Email", email),
    field("Password", password, "At least 10 characters; a phrase is best."),
    h("button", { type: "submit", class: "primary" }, "Sign up"),
    h("p", {}, "Have an account? ", h("a", { href: "/signin", "data-link": true }, "Sign in")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await api("/api/v1/auth/register", "POST", {
        username: username.value.trim(),
        email: email.value.trim(),
        password: password.value,
      });
      await signIn(username.value.trim(), password.value);
      navigate("/dashboard");
    } catch (err) {
      showError(error, err);
    }
  });
  main.append(form);
}

export function signInPage(main: HTMLElement): void {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = errorBox();
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    error,
    field("Username", username),
    field("Password", password),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    h("p", {}, "New here? ", h("a", { href: "/signup", "data-link": true }, "Create an account")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await signIn(username.value.trim(), password.value);
      const back = new URLSearchParams(location.search).get("next");
      navigate(back && back.startsWith("/") && !back.startsWith("//") ? back : "/");
    } catch (err) {
      showError(error, err);
    }
  });
  main.append(form);
}
