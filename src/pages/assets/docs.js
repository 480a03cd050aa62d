// The API docs page: renders the server's OpenAPI document (fetched relative to the root
// path), grouped by tag, with each schema as a readable tree and a "Try it" form for
// operations that have an example request.

const docBox = document.getElementById("doc");

fetch(CONFIG.root + "/openapi.json")
  .then(async (res) => {
    if (!res.ok) throw new Error(await errorText(res));
    return res.json();
  })
  .then(render)
  .catch((err) => {
    docBox.replaceChildren();
    showError("cannot load the OpenAPI document: " + err.message);
  });

/** Text with `code` spans. */
function text(s) {
  return String(s || "").split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function render(doc) {
  const groups = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "Other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(doc, path, method, op));
    }
  }
  const sections = [...groups].filter(([, ops]) => ops.length);
  docBox.replaceChildren(
    el("h1", {}, doc.info.title, " ", el("span", {class: "badge"}, doc.info.version)),
    el("p", {}, text(doc.info.description)),
    el("p", {class: "muted"}, "Base URL ", el("code", {}, doc.servers[0].url),
      ` · OpenAPI ${doc.openapi} · `, el("a", {href: CONFIG.root + "/openapi.json"}, "openapi.json")),
    el("p", {}, sections.map(([tag], i) => [i ? " · " : "", el("a", {href: "#tag-" + tag}, tag)])),
    ...sections.map(([tag, ops]) => el("section", {id: "tag-" + tag}, el("h2", {}, tag), ops)));
}

function operation(doc, path, method, op) {
  const body = el("div", {});
  if (op.description) body.append(el("p", {}, text(op.description)));
  if (op.parameters && op.parameters.length) {
    body.append(el("h3", {}, "Parameters"), el("table", {class: "params"},
      el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type")),
      op.parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
        el("td", {}, (p.schema && p.schema.type) || "")))));
  }
  const request = op.requestBody && op.requestBody.content;
  for (const [type, media] of Object.entries(request || {})) {
    body.append(el("h3", {}, "Request body ", el("code", {class: "muted"}, type)), schemaTree(doc, media.schema));
    if (media.example !== undefined) {
      body.append(el("h3", {}, "Example"), el("pre", {}, JSON.stringify(media.example)));
    }
  }
  body.append(el("h3", {}, "Responses"));
  for (const [status, response] of Object.entries(op.responses || {})) {
    body.append(el("p", {}, el("b", {}, status), " ", text(response.description)));
    for (const [type, media] of Object.entries(response.content || {})) {
      body.append(el("div", {class: "muted"}, el("code", {}, type)), schemaTree(doc, media.schema));
    }
  }
  body.append(tryIt(path, method, op));
  return el("details", {class: "op", id: op.operationId},
    el("summary", {}, el("span", {class: "method " + method}, method.toUpperCase()),
      el("code", {}, path), el("span", {class: "muted"}, text(op.summary))),
    body);
}

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 8) {
    schema = schema.$ref.split("/").slice(1).reduce((node, key) => node && node[key], doc);
  }
  return schema || {};
}

/** A schema as a tree: types, bounds, required properties and descriptions. */
function schemaTree(doc, schema, depth = 0) {
  const ref = schema && schema.$ref ? schema.$ref.split("/").pop() : "";
  const s = resolve(doc, schema);
  const line = [];
  if (ref) line.push(el("span", {class: "type"}, ref), " ");
  if (depth > 8) return el("div", {class: "schema"}, "…");
  const type = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (type) line.push(el("span", {class: "type"}, type));
  if (s.const !== undefined) line.push(" = ", JSON.stringify(s.const));
  if (s.enum) line.push(" one of ", s.enum.map((v) => JSON.stringify(v)).join(" | "));
  if (s.minimum !== undefined || s.maximum !== undefined) {
    line.push(` ${s.minimum ?? "−∞"} … ${s.maximum ?? "∞"}`);
  }
  if (s.minItems !== undefined || s.maxItems !== undefined) {
    line.push(s.minItems === s.maxItems ? ` [${s.minItems}]` : ` [${s.minItems ?? 0}…${s.maxItems ?? "∞"}]`);
  }
  if (s.minLength !== undefined || s.maxLength !== undefined) {
    line.push(` ${s.minLength ?? 0}…${s.maxLength ?? "∞"} characters`);
  }
  if (s.pattern) line.push(" matching ", el("code", {}, s.pattern));
  if (s.default !== undefined) line.push(" default ", JSON.stringify(s.default));
  if (s.contentMediaType) line.push(" ", el("code", {}, s.contentMediaType));
  if (s.description) line.push(" ", el("span", {class: "note"}, "— ", text(s.description)));
  const node = el("div", {class: "schema"}, line);
  const children = [];
  const required = new Set(s.required || []);
  for (const [name, child] of Object.entries(s.properties || {})) {
    children.push(el("li", {}, el("span", {class: "prop"}, name), required.has(name) ? el("span", {class: "req"}, "*") : "",
      ": ", schemaTree(doc, child, depth + 1)));
  }
  if (s.additionalProperties && typeof s.additionalProperties === "object") {
    children.push(el("li", {}, el("span", {class: "prop"}, "<any name>"), ": ", schemaTree(doc, s.additionalProperties, depth + 1)));
  }
  if (s.prefixItems) s.prefixItems.forEach((item, i) => children.push(el("li", {}, `[${i}]: `, schemaTree(doc, item, depth + 1))));
  else if (s.items && typeof s.items === "object") children.push(el("li", {}, "items: ", schemaTree(doc, s.items, depth + 1)));
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (s[key]) children.push(el("li", {}, key, ":", el("ul", {}, s[key].map((c) => el("li", {}, schemaTree(doc, c, depth + 1))))));
  }
  if (s.contentSchema) children.push(el("li", {}, "data holds JSON: ", schemaTree(doc, s.contentSchema, depth + 1)));
  if (children.length) node.append(el("ul", {}, children));
  return node;
}

/** A form that sends the example request (or a plain GET) and shows the answer. */
function tryIt(path, method, op) {
  const media = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  const hasParams = (op.parameters || []).length > 0;
  if (hasParams || (method !== "get" && !(media && media.example !== undefined))) return null;
  const area = media ? el("textarea", {rows: 3, spellcheck: "false"}) : null;
  if (area) area.value = JSON.stringify(media.example);
  const out = el("pre", {hidden: true});
  const button = el("button", {type: "button"}, "Send");
  button.addEventListener("click", async () => {
    out.hidden = false;
    out.textContent = "…";
    try {
      const res = await fetch(CONFIG.root + path, {
        method: method.toUpperCase(),
        headers: area ? {"Content-Type": "application/json"} : {},
        body: area ? area.value : undefined,
      });
      const body = await res.text();
      out.textContent = `${res.status} ${res.headers.get("Content-Type") || ""}\n\n${body.slice(0, 20000)}`;
    } catch (err) {
      out.textContent = "the request failed: " + err.message;
    }
  });
  return el("div", {class: "try"}, el("h3", {}, "Try it"), area, el("div", {class: "actions"}, button), out);
}
