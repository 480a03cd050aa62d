"use strict";
// Shared by every page: the config the server embedded, a DOM helper, error messages.

/** What the server put in the page: `root` (the path prefix every URL starts with) and more. */
const CONFIG = JSON.parse(document.getElementById("config").textContent);

/** Makes an element: el("a", {href: "x"}, "text", child). Text is never parsed as HTML. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** "400 invalid_input: <message>" from an error answer: tinyserve's {"error", "code"} or
 *  OpenAI's {"error": {"message", "code"}}; the raw text when it is not JSON. */
async function errorText(res) {
  const text = await res.text();
  let message = text.trim() || res.statusText;
  let code = "";
  try {
    const body = JSON.parse(text);
    if (typeof body.error === "string") {
      message = body.error;
      code = body.code || "";
    } else if (body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || body.error.type || "";
    }
  } catch (_) {
    // Not JSON: keep the text.
  }
  return `${res.status}${code ? " " + code : ""}: ${message}`;
}

/** Shows `message` in the page's error box; an empty message hides it. */
function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

/** Sets the status line next to the buttons. */
function setStatus(text) {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}
