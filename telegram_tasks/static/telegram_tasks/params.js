// The order form's parameters: the emoji picker adds or removes an emoji in the reactions
// input; the form shows only the parameters the chosen action takes (data-action-params).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const picker of document.querySelectorAll(".tg-reaction-picker")) {
    const input = document.getElementById(picker.dataset.for);
    picker.addEventListener("click", (event) => {
      const button = event.target.closest("button.tg-reaction");
      if (!button || !input) return;
      const chosen = input.value.split(/[\s,]+/).filter(Boolean);
      const emoji = button.textContent;
      const at = chosen.indexOf(emoji);
      if (at >= 0) chosen.splice(at, 1);
      else chosen.push(emoji);
      input.value = chosen.join(" ");
    });
  }
  const action = document.getElementById("id_action");
  const map = action && action.dataset.actionParams ? JSON.parse(action.dataset.actionParams) : null;
  if (!map || action.tagName !== "SELECT") return;
  const show = () => {
    const takes = map[action.value] || [];
    for (const name of ["reactions", "option"]) {
      const row = document.querySelector(`.form-row.field-${name}, .fieldBox.field-${name}`);
      if (row) row.style.display = takes.includes(name) ? "" : "none";
    }
  };
  action.addEventListener("change", show);
  show();
});
