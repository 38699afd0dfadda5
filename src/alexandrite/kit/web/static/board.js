// Production dashboard: the board refreshes itself (hx-trigger="every Ns"), except while the operator is
// working in it (focus on one of its buttons or links), so a refresh never takes the focus away.
// A file, not an hx-trigger filter: the pages' Content-Security-Policy allows no eval.
document.addEventListener("htmx:beforeRequest", (event) => {
  const board = document.getElementById("board");
  if (board && event.detail.elt === board && board.contains(document.activeElement)) {
    event.preventDefault();
  }
});
