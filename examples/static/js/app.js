// Lists the items of /api/items (the demo's token is "secret").
fetch("/api/items", { headers: { Authorization: "Bearer secret" } })
  .then((res) => res.json())
  .then((items) => {
    const list = document.getElementById("items");
    for (const item of items) {
      const li = document.createElement("li");
      li.textContent = item.name;
      list.appendChild(li);
    }
  });
