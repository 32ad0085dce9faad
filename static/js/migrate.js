// Dataset page: bring the statuses of the original CV Tools (its classes.dat) as a background job.
(() => {
  const { $, api, toast, watchJob } = CV;

  function summary(r) {
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    const parts = [`${sum(r.added)} added`, `${sum(r.changed)} changed`, `${r.unchanged} already right`];
    if (r.groups_created.length) parts.push(`groups created: ${r.groups_created.join(", ")}`);
    if (r.skipped.length) parts.push(`${r.skipped.length} skipped (first: ${r.skipped[0].path}: ${r.skipped[0].reason})`);
    return `Imported from the original: ${parts.join("; ")}`;
  }

  async function start(e) {
    e.preventDefault();
    const file = $("import-file").files[0];
    if (!file) { $("import-error").textContent = "Choose the original's classes.dat"; return; }
    const form = new FormData();
    form.append("file", file);
    form.append("web_dir", $("import-web").value.trim());
    try {
      const r = await api("POST", "/api/import-original", form);
      $("dlg-import").close();
      toast("Importing the original's statuses…");
      watchJob(r.job, {
        done: (job) => {
          if (job.state === "done") { toast(summary(job.result), job.result.skipped.length ? "error" : "info"); setTimeout(() => location.reload(), 4000); }
          else toast(`Import failed: ${job.error || job.state}`, "error");
        },
      });
    } catch (err) {
      $("import-error").textContent = err.message;
    }
  }

  $("btn-import-original").addEventListener("click", () => { $("import-error").textContent = ""; $("dlg-import").showModal(); });
  $("import-ok").addEventListener("click", start);
})();
