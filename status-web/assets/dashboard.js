// The dashboard: renders every `snapshot` event of the Socket.IO feed and sends the
// operator's actions to the REST API. Texts in Indonesian and English.
"use strict";
(function () {
  const T = {
    id: {
      live_connecting: "Menghubungkan…", live_on: "Langsung", live_off: "Terputus, menyambung lagi…",
      logout: "Keluar", whatsapp: "WhatsApp", queue: "Antrean", services: "Layanan", logger: "Log Google Sheets",
      pair_title: "Tautkan dengan nomor telepon", pair_phone: "Nomor WhatsApp", pair_button: "Minta kode",
      pair_code: "Masukkan kode ini di ponsel: WhatsApp → Perangkat tertaut → Tautkan dengan nomor telepon:",
      reset: "Atur ulang sesi", reset_confirm: "Yakin? Nomor ini akan terputus dan harus ditautkan lagi.",
      reset_yes: "Ya, atur ulang", cancel: "Batal", reset_done: "Sesi diatur ulang. Tunggu kode QR baru.",
      send_title: "Kirim pesan uji", send_to: "Nomor tujuan", send_message: "Pesan (keterangan bila ada berkas)", send_button: "Kirim",
      send_file: "Lampiran (opsional: foto JPEG/PNG/WebP atau dokumen, maks. 3 MB)", send_file_too_big: "Berkas lebih dari 3 MB; kirim lewat URL (lihat docs/media.md)",
      media_image: "Foto", media_document: "Dokumen", f_media: "Lampiran",
      send_done: "Masuk antrean: ", jobs: "50 pekerjaan terakhir", jobs_empty: "Belum ada pekerjaan.",
      col_status: "Status", col_to: "Tujuan", col_attempts: "Percobaan", col_error: "Galat", col_updated: "Diperbarui",
      retry: "Coba lagi", pause: "Jeda antrean", resume: "Lanjutkan antrean", paused: "Dijeda oleh operator.",
      flowing: "Pesan sedang dikirim.", waiting: "Menunggu: ",
      up: "berjalan", down: "tidak terjangkau", refused: "token internal ditolak",
      svc_dispatcher: "Dispatcher (antrean)", svc_gateway: "Gateway WhatsApp", svc_logger: "Logger Sheets",
      restarted: "{name} dimulai ulang {n}×", restart_last: "terakhir: {why}", exit_code: "kode keluar {c}",
      no_restarts: "Tidak ada layanan yang dimulai ulang sejak {t}.", no_restarts_plain: "Tidak ada layanan yang dimulai ulang.",
      backlog: "belum terunggah: ", qr_expires: "Kode berganti dalam {s} detik", qr_expired: "Menunggu kode baru…",
      pending: "menunggu", processing: "diproses", sent: "terkirim", delivered: "diterima", read: "dibaca", failed: "gagal",
      c_pending: "Menunggu", c_processing: "Diproses", c_sent: "Terkirim", c_delivered: "Diterima", c_read: "Dibaca", c_failed: "Gagal",
      c_deliveryOverdue: "Belum diterima", overdue: "belum diterima: ponsel penerima mungkin mati atau tanpa internet",
      lg_disabled: "nonaktif", lg_ok: "baik", lg_failing: "gagal", lg_unknown: "tidak diketahui",
      new_chats: "Chat baru: {u} dari {n} terpakai, diperbarui {t}.",
      new_chats_full: "Jatah chat baru habis ({u} dari {n}) sampai {t}. Pesan ke orang yang belum pernah menerima pesan dari nomor ini menunggu sampai saat itu lalu terkirim sendiri; pesan ke kontak lain tetap terkirim.",
      notice: "{service}: Berkas data tidak dapat dibaca saat mulai. Berkas dipindahkan ke {keptAt} (tidak ada yang dihapus) dan berkas baru dimulai; {n} catatan dibawa.",
      notice_one: "{service}: Berkas data tidak dapat dibaca saat mulai. Berkas dipindahkan ke {keptAt} (tidak ada yang dihapus) dan berkas baru dimulai; {n} catatan dibawa.",
      notice_disk_full: "{service}: Disk penuh. Berkas data tidak dapat ditulis, jadi yang tidak dapat disimpan ditolak. Kosongkan ruang disk; layanan pulih sendiri.",
      dismiss: "Tutup",
      pace_none: "Tanpa jeda antarpesan.", pace_every: "Satu pesan tiap {min} detik.", pace_range: "Satu pesan tiap {min}–{max} detik.",
      pace_sent: "{n} terkirim dalam 24 jam terakhir.", pace_cap: "{n} dari {cap} yang diizinkan per 24 jam terkirim.",
      pace_cap_full: "Batas harian tercapai ({n} dari {cap}): pesan berikutnya dapat dikirim pada {t}; yang lain menunggu dan terkirim sendiri.",
      account_jobs: "Pekerjaan nomor ini",
      today_title: "Sekilas hari ini", today_hours: "24 jam terakhir, per jam", today_days: "30 hari terakhir, per hari",
      today_reasons: "Alasan gagal terbanyak (30 hari)", today_no_failures: "Tidak ada yang gagal dalam 30 hari terakhir.",
      today_line: "24 jam terakhir: {sent} terkirim · {delivered} diterima · {read} dibaca · {failed} gagal",
      month_line: "30 hari terakhir: {sent} terkirim · {delivered} diterima · {read} dibaca · {failed} gagal",
      find_title: "Cari pesan", find_phone: "Nomor", find_id: "ID pekerjaan", find_any: "Semua", find_account: "Nomor WhatsApp",
      find_from: "Dari tanggal", find_until: "Sampai tanggal", find_button: "Cari", find_csv: "Unduh CSV", find_more: "Tampilkan lebih banyak",
      find_none: "Tidak ada pekerjaan yang cocok.", find_count: "{n} pekerjaan ditampilkan.", col_created: "Dibuat",
      detail_title: "Pekerjaan", detail_steps: "Riwayat", close: "Tutup",
      f_status: "Status", f_to: "Tujuan", f_recipient: "Penerima", f_account: "Nomor WhatsApp", f_message: "Pesan", f_attempts: "Percobaan",
      s_created: "Dibuat", s_scheduled: "Dijadwalkan untuk {t}", s_leased: "Percobaan {n} dimulai ({owner})",
      s_sent: "Terkirim: server WhatsApp menerimanya", s_retry_later: "Percobaan {n} gagal: {error}. Dicoba lagi {t}",
      s_released: "Dikembalikan tanpa memakai percobaan: {error}", s_interrupted: "Percobaan {n} terputus: {error}",
      s_failed: "Gagal: {error}", s_operator_retry: "Dikirim ulang oleh operator", s_delivered: "Diterima di ponsel penerima",
      s_read: "Dibaca", s_delivery_overdue: "Belum ada tanda diterima tepat waktu",
      time_lock: "WhatsApp membatasi chat baru dari nomor ini sampai {t}. Pesan ke orang tua yang belum pernah mengirim pesan ke sekolah menunggu sampai saat itu lalu terkirim sendiri; pesan ke kontak lain tetap terkirim. Agar tidak terulang: minta orang tua menyimpan nomor sekolah dan mengirim satu pesan, dan kirim lebih pelan (WA_MIN_INTERVAL_MS, WA_DAILY_CAP).",
      st: {
        unknown: ["belum terjangkau", "Gateway WhatsApp belum terjangkau. Pastikan layanan wa-gateway berjalan."],
        starting: ["memulai", "WhatsApp sedang dimulai. Tunggu sebentar."],
        waiting_for_qr: ["menunggu pindai", "Buka WhatsApp di ponsel → Perangkat tertaut → Tautkan perangkat, lalu pindai kode ini."],
        waiting_for_pair_code: ["menunggu kode", "Masukkan kode tautan di ponsel: WhatsApp → Perangkat tertaut → Tautkan dengan nomor telepon."],
        connecting: ["menghubungkan", "Menghubungkan ke WhatsApp. Tidak perlu melakukan apa pun."],
        connected: ["terhubung", "Terhubung. Pesan dikirim otomatis; tidak perlu melakukan apa pun."],
        disconnected: ["terputus", "Koneksi terputus. Server menyambung lagi sendiri; periksa internet server bila berlanjut."],
        logged_out: ["keluar", "Ponsel memutus tautan server ini. Pindai kode QR baru untuk menautkan lagi."],
        banned: ["diblokir", "WhatsApp memblokir nomor ini sementara. Tunggu hingga blokir berakhir."],
        replaced: ["digantikan", "Sesi WhatsApp Web lain mengambil alih. Tekan “Atur ulang sesi” lalu tautkan lagi."],
        outdated: ["usang", "Versi WhatsApp Web ini usang. Perbarui server."],
        down: ["tidak terjangkau", "Gateway WhatsApp tidak terjangkau. Pastikan layanan wa-gateway berjalan."],
        refused: ["token internal ditolak", "Gateway WhatsApp menolak token internal status-web. Samakan ABTRACK_INTERNAL_TOKEN di semua layanan lalu jalankan ulang."]
      }
    },
    en: {
      live_connecting: "Connecting…", live_on: "Live", live_off: "Disconnected, reconnecting…",
      logout: "Log out", whatsapp: "WhatsApp", queue: "Queue", services: "Services", logger: "Google Sheets log",
      pair_title: "Link with a phone number", pair_phone: "WhatsApp number", pair_button: "Get code",
      pair_code: "Enter this code on the phone: WhatsApp → Linked devices → Link with phone number:",
      reset: "Reset session", reset_confirm: "Sure? This number will be unlinked and must be linked again.",
      reset_yes: "Yes, reset", cancel: "Cancel", reset_done: "Session reset. Wait for a new QR code.",
      send_title: "Send a test message", send_to: "Recipient number", send_message: "Message (the caption, with a file)", send_button: "Send",
      send_file: "Attachment (optional: a JPEG/PNG/WebP photo or a document, up to 3 MB)", send_file_too_big: "The file is over 3 MB; send it by URL (see docs/media.md)",
      media_image: "Photo", media_document: "Document", f_media: "Attachment",
      send_done: "Queued: ", jobs: "Last 50 jobs", jobs_empty: "No jobs yet.",
      col_status: "Status", col_to: "To", col_attempts: "Attempts", col_error: "Error", col_updated: "Updated",
      retry: "Retry", pause: "Pause queue", resume: "Resume queue", paused: "Paused by an operator.",
      flowing: "Messages are being sent.", waiting: "Waiting: ",
      up: "running", down: "unreachable", refused: "internal token refused",
      svc_dispatcher: "Dispatcher (queue)", svc_gateway: "WhatsApp gateway", svc_logger: "Sheets logger",
      restarted: "{name} restarted {n}×", restart_last: "last: {why}", exit_code: "exit code {c}",
      no_restarts: "No service restarted since {t}.", no_restarts_plain: "No service restarted.",
      backlog: "not yet uploaded: ", qr_expires: "Code changes in {s} s", qr_expired: "Waiting for a new code…",
      pending: "pending", processing: "processing", sent: "sent", delivered: "delivered", read: "read", failed: "failed",
      c_pending: "Pending", c_processing: "Processing", c_sent: "Sent", c_delivered: "Delivered", c_read: "Read", c_failed: "Failed",
      c_deliveryOverdue: "Not delivered yet", overdue: "not delivered yet: the recipient's phone may be off or offline",
      lg_disabled: "disabled", lg_ok: "ok", lg_failing: "failing", lg_unknown: "unknown",
      new_chats: "New chats: {u} of {n} used, renewed {t}.",
      new_chats_full: "The new-chat quota is used up ({u} of {n}) until {t}. Messages to people who never got one from this number wait until then and go out by themselves; messages to other contacts keep going.",
      notice: "{service}: a data file could not be read at start. It was moved aside to {keptAt} (nothing was deleted) and a fresh one started; {n} records were carried over.",
      notice_one: "{service}: a data file could not be read at start. It was moved aside to {keptAt} (nothing was deleted) and a fresh one started; {n} record was carried over.",
      notice_disk_full: "{service}: disk full. A data file cannot be written, so what cannot be stored is refused. Free space on the disk; the service recovers by itself.",
      dismiss: "Dismiss",
      pace_none: "No pause between messages.", pace_every: "One message every {min} s.", pace_range: "One message every {min}–{max} s.",
      pace_sent: "{n} sent in the last 24 hours.", pace_cap: "{n} of the {cap} allowed in 24 hours sent.",
      pace_cap_full: "Daily cap reached ({n} of {cap}): the next message can go at {t}; the others wait and go out by themselves.",
      account_jobs: "This number's jobs",
      today_title: "The day at a glance", today_hours: "Last 24 hours, per hour", today_days: "Last 30 days, per day",
      today_reasons: "Most common failure reasons (30 days)", today_no_failures: "Nothing failed in the last 30 days.",
      today_line: "Last 24 hours: {sent} sent · {delivered} delivered · {read} read · {failed} failed",
      month_line: "Last 30 days: {sent} sent · {delivered} delivered · {read} read · {failed} failed",
      find_title: "Find a message", find_phone: "Number", find_id: "Job id", find_any: "Any", find_account: "WhatsApp number",
      find_from: "From", find_until: "Until", find_button: "Search", find_csv: "Download CSV", find_more: "Show more",
      find_none: "No job matches.", find_count: "{n} jobs shown.", col_created: "Created",
      detail_title: "Job", detail_steps: "History", close: "Close",
      f_status: "Status", f_to: "To", f_recipient: "Recipient", f_account: "WhatsApp number", f_message: "Message", f_attempts: "Attempts",
      s_created: "Created", s_scheduled: "Scheduled for {t}", s_leased: "Attempt {n} started ({owner})",
      s_sent: "Sent: WhatsApp's server accepted it", s_retry_later: "Attempt {n} failed: {error}. Next try {t}",
      s_released: "Given back without using the attempt: {error}", s_interrupted: "Attempt {n} interrupted: {error}",
      s_failed: "Failed: {error}", s_operator_retry: "Sent again by an operator", s_delivered: "Delivered to the recipient's phone",
      s_read: "Read", s_delivery_overdue: "No delivery receipt in time",
      time_lock: "WhatsApp limits new chats from this number until {t}. Messages to parents who never wrote to the school wait until then and go out by themselves; messages to other contacts keep going. To avoid it: ask parents to save the school's number and send it one message, and send more slowly (WA_MIN_INTERVAL_MS, WA_DAILY_CAP).",
      st: {
        unknown: ["not reached yet", "The WhatsApp gateway has not been reached yet. Check that the wa-gateway service is running."],
        starting: ["starting", "WhatsApp is starting. Wait a moment."],
        waiting_for_qr: ["waiting for scan", "Open WhatsApp on the phone → Linked devices → Link a device, and scan this code."],
        waiting_for_pair_code: ["waiting for code", "Enter the link code on the phone: WhatsApp → Linked devices → Link with phone number."],
        connecting: ["connecting", "Connecting to WhatsApp. Nothing to do."],
        connected: ["connected", "Connected. Messages go out by themselves; nothing to do."],
        disconnected: ["disconnected", "The connection dropped. The server reconnects by itself; check the server's internet if it lasts."],
        logged_out: ["logged out", "The phone unlinked this server. Scan a new QR code to link it again."],
        banned: ["banned", "WhatsApp blocked this number for a while. Wait until the block ends."],
        replaced: ["replaced", "Another WhatsApp Web session took over. Press “Reset session” and link again."],
        outdated: ["outdated", "This WhatsApp Web version is outdated. Update the server."],
        down: ["unreachable", "The WhatsApp gateway is unreachable. Check that the wa-gateway service is running."],
        refused: ["internal token refused", "The WhatsApp gateway refused status-web's internal token. Set the same ABTRACK_INTERNAL_TOKEN on every service and restart them."]
      }
    }
  };
  const lang = document.body.dataset.lang === "en" ? "en" : "id";
  const t = (k) => T[lang][k] || k;
  const $ = (id) => document.getElementById(id);
  // Fills `{name}` placeholders in one pass, so a value is never read as a pattern.
  const fill = (text, vars) => text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; };
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  if (document.body.dataset.auth !== "true") $("logout-form").hidden = true;

  let state = null;
  const time = (iso) => iso ? new Date(iso).toLocaleString(lang === "id" ? "id-ID" : "en-GB", { hour12: false }) : "";
  const tone = (s) => ({ connected: "ok", sent: "ok", delivered: "ok", read: "ok", ok: "ok", failed: "bad", failing: "bad", banned: "bad", logged_out: "bad", down: "bad", replaced: "bad", outdated: "bad", refused: "bad" }[s] || "warn");
  const REFUSED = "refused: internal token";

  function render(s) {
    state = s;
    renderNotices(s.notices || []);
    const g = s.gateway;
    const status = s.services.gateway.up ? g.status
      : (s.services.gateway.state === REFUSED ? "refused" : (g.status === "unknown" ? "unknown" : "down"));
    const st = T[lang].st[status] || [status, g.detail];
    const pill = $("conn-status");
    pill.textContent = st[0]; pill.className = "pill " + tone(status); pill.dataset.status = status;
    $("conn-name").textContent = [g.pushName, g.ownNumber].filter(Boolean).join(" · ");
    $("next-step").textContent = st[1];
    $("conn-detail").textContent = g.detail || "";
    const locked = g.timeLockUntil && new Date(g.timeLockUntil) > Date.now();
    $("time-lock").hidden = !locked;
    $("time-lock").textContent = locked ? t("time_lock").replace("{t}", time(g.timeLockUntil)) : "";
    const q = g.newChatQuota;
    const full = q && q.total > 0 && q.used >= q.total && !(q.cycleEndsAt && new Date(q.cycleEndsAt) <= Date.now());
    $("new-chats").hidden = !q;
    $("new-chats").className = full ? "next warn" : "muted";
    $("new-chats").textContent = !q ? "" : t(full ? "new_chats_full" : "new_chats")
      .replace("{u}", String(q.used)).replace("{n}", String(q.total))
      .replace("{t}", q.cycleEndsAt ? time(q.cycleEndsAt) : "?");
    renderPacing($("pacing"), g.pacing);
    const own = (s.accounts || [])[0];
    renderAccountCounts($("account-counts"), own && own.counts);
    const qrBox = $("qr-box");
    if (s.qrSvg) {
      if ($("qr").dataset.svg !== s.qrSvg) { $("qr").innerHTML = s.qrSvg; $("qr").dataset.svg = s.qrSvg; }
      qrBox.hidden = false;
    } else {
      $("qr").innerHTML = ""; $("qr").dataset.svg = ""; qrBox.hidden = true;
    }
    tick();
    renderAccounts(s);

    const c = s.queue.counts;
    const counts = $("counts"); counts.replaceChildren();
    for (const k of ["pending", "processing", "sent", "delivered", "read", "failed", "deliveryOverdue"]) {
      const d = el("div"); d.id = "count-" + k; d.append(el("b", String(c[k])), el("span", t("c_" + k))); counts.append(d);
    }
    $("queue-state").textContent = s.queue.paused ? t("paused") : (s.queue.waitingReason ? t("waiting") + s.queue.waitingReason : t("flowing"));
    $("pause-button").textContent = s.queue.paused ? t("resume") : t("pause");

    const list = $("service-list"); list.replaceChildren();
    for (const k of ["dispatcher", "gateway", "logger"]) {
      const h = s.services[k];
      const li = el("li"); li.id = "svc-" + k;
      const label = h.up ? t("up") : (h.state === REFUSED ? t("refused") : t("down"));
      li.dataset.state = h.state || "";
      li.append(el("span", t("svc_" + k) + ": "), el("span", label, "pill " + (h.up ? "ok" : "bad")));
      if (!h.up && h.error) li.append(el("span", " " + h.error, "muted"));
      list.append(li);
    }
    renderRestarts(s.launcher);
    const lg = s.logger;
    $("logger-state").textContent = t("lg_" + lg.state); $("logger-state").className = "pill " + tone(lg.state);
    $("logger-backlog").textContent = t("backlog") + lg.backlog;
    $("logger-detail").textContent = [lg.detail, lg.lastError].filter(Boolean).join(" — ");

    const body = $("jobs").tBodies[0]; body.replaceChildren();
    for (const j of s.recentJobs) {
      const tr = el("tr"); tr.dataset.id = j.id; tr.dataset.status = j.status;
      const cell = (label, text, cls) => { const td = el("td", text, cls); td.dataset.label = t(label); return td; };
      const stc = cell("col_status"); stc.append(el("span", t(j.status), "pill status " + tone(j.status))); tr.append(stc);
      tr.append(toCell(cell, j), cell("col_attempts", String(j.attempts)));
      tr.append(cell("col_error", j.lastError ? j.lastError.code + ": " + j.lastError.message : (j.deliveryOverdue ? t("overdue") : ""), "err"));
      tr.append(cell("col_updated", time(j.updatedAt || j.createdAt), "muted"));
      const act = el("td");
      if (j.status === "failed") {
        const b = el("button", t("retry"), "small retry"); b.type = "button";
        b.addEventListener("click", () => api("POST", "/api/jobs/" + encodeURIComponent(j.id) + "/retry").catch((e) => { b.textContent = e.message; }));
        act.append(b);
      }
      tr.append(act); body.append(tr);
    }
    $("jobs-empty").hidden = s.recentJobs.length > 0;
  }

  // An account's pacing: the gap between messages, and its sends of the last 24
  // hours against the daily cap (a warning while the cap holds messages back).
  const secs = (ms) => String(Math.round(ms / 100) / 10);
  function renderPacing(node, p) {
    node.hidden = !p;
    if (!p) { node.textContent = ""; return; }
    const every = p.minIntervalMs + p.jitterMs === 0 ? t("pace_none")
      : fill(t(p.jitterMs ? "pace_range" : "pace_every"), { min: secs(p.minIntervalMs), max: secs(p.minIntervalMs + p.jitterMs) });
    const full = p.dailyCap > 0 && p.sentLastDay >= p.dailyCap && !!p.capFreesAt;
    const use = fill(t(full ? "pace_cap_full" : (p.dailyCap > 0 ? "pace_cap" : "pace_sent")),
      { n: p.sentLastDay, cap: p.dailyCap, t: time(p.capFreesAt) });
    node.textContent = every + " " + use;
    node.className = full ? "next warn pacing" : "muted pacing";
    node.dataset.full = String(full);
  }

  // An account's own job counts (several accounts only), under its card.
  function renderAccountCounts(node, c) {
    node.hidden = !c;
    if (!c) { node.replaceChildren(); return; }
    const grid = el("div", null, "counts");
    for (const k of ["pending", "processing", "sent", "delivered", "read", "failed"]) {
      const d = el("div"); d.dataset.count = k; d.append(el("b", String(c[k])), el("span", t("c_" + k))); grid.append(d);
    }
    node.replaceChildren(el("h3", t("account_jobs")), grid);
  }

  // The launcher's record of restarts (absent without a launcher): a line per
  // service it restarted, or one quiet line when it restarted none.
  function renderRestarts(launcher) {
    const list = $("restart-list"); list.replaceChildren();
    list.hidden = !launcher;
    if (!launcher) return;
    const restarted = launcher.services.filter((r) => r.restarts > 0);
    for (const r of restarted) {
      const why = r.lastExit || (r.lastExitCode != null ? t("exit_code").replace("{c}", String(r.lastExitCode)) : "");
      const li = el("li", [
        t("restarted").replace("{name}", r.name).replace("{n}", String(r.restarts)),
        why ? t("restart_last").replace("{why}", why) : "",
        time(r.lastRestartAt),
      ].filter(Boolean).join(" · "), "restart");
      li.dataset.service = r.name;
      list.append(li);
    }
    if (!restarted.length) {
      list.append(el("li", launcher.startedAt ? t("no_restarts").replace("{t}", time(launcher.startedAt)) : t("no_restarts_plain"), "no-restarts muted"));
    }
  }

  // The services' notices, oldest first: what happened, where the file is kept, and
  // a button that dismisses it; a full disk has none, as it ends by itself. The
  // banner is hidden when there are none.
  function renderNotices(notices) {
    const box = $("notices"), list = $("notice-list");
    list.replaceChildren();
    box.hidden = notices.length === 0;
    for (const n of notices) {
      const li = el("li"); li.dataset.service = n.service; li.dataset.id = n.id;
      const body = el("div", null, "notice-body");
      const full = n.kind === "disk_full";
      const key = full ? "notice_disk_full" : n.carriedOver === 1 ? "notice_one" : "notice";
      const text = el("p", fill(t(key), { service: n.service, keptAt: n.keptAt, n: n.carriedOver }) + " ", "notice-text");
      text.append(el("span", time(n.at), "muted"));
      body.append(text);
      if (n.reason) body.append(el("p", (n.file ? n.file + ": " : "") + n.reason, "muted notice-reason"));
      li.append(body);
      list.append(li);
      if (full) continue;
      let result = null;
      const b = el("button", t("dismiss"), "small notice-dismiss"); b.type = "button";
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await api("POST", "/api/notices/dismiss", { service: n.service, id: n.id });
          li.remove();
          box.hidden = list.children.length === 0;
        } catch (err) {
          b.disabled = false;
          if (!result) { result = el("p", "", "result error"); body.append(result); }
          result.textContent = err.message;
        }
      });
      li.append(b);
    }
  }

  // The other accounts' cards (the default account's is the first card), each built
  // once and filled at every snapshot, so a half-typed number survives an update.
  const cards = new Map();
  function accountStatus(a) {
    return a.service.up ? a.gateway.status
      : (a.service.state === REFUSED ? "refused" : (a.gateway.status === "unknown" ? "unknown" : "down"));
  }
  function accountCard(name) {
    if (cards.has(name)) return cards.get(name);
    const q = encodeURIComponent(name);
    const c = { root: el("section", null, "card account") };
    c.root.dataset.account = name;
    const title = el("h2"); title.append(el("span", t("whatsapp") + " "), el("span", name, "muted"));
    c.pill = el("span", null, "pill"); c.name = el("span");
    const line = el("p"); line.append(c.pill, " ", c.name);
    c.next = el("p", null, "next"); c.detail = el("p", null, "muted"); c.waiting = el("p", null, "next warn");
    c.pacing = el("p", null, "muted pacing"); c.counts = el("div", null, "account-counts");
    c.qr = el("div"); c.qr.setAttribute("aria-label", "QR");
    const form = el("form"); const label = el("label");
    const input = el("input"); input.name = "phone"; input.required = true; input.setAttribute("inputmode", "tel"); input.placeholder = "62812...";
    label.append(el("span", t("pair_phone") + " "), input);
    form.append(label, el("button", t("pair_button")));
    const pairResult = el("p", null, "result"); pairResult.dataset.role = "pair-result";
    const pair = el("details"); pair.append(el("summary", t("pair_title")), form, pairResult);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const r = await api("POST", "/api/gateway/pair-code?account=" + q, { phone: input.value });
        pairResult.className = "result"; pairResult.replaceChildren(el("span", t("pair_code") + " "), el("span", r.code, "pair-code"));
      } catch (err) { pairResult.textContent = err.message; pairResult.className = "result error"; }
    });
    const reset = el("button", t("reset"), "danger"); reset.type = "button"; reset.dataset.role = "reset";
    const yes = el("button", t("reset_yes"), "danger"); yes.type = "button"; yes.dataset.role = "reset-yes";
    const no = el("button", t("cancel")); no.type = "button";
    const confirm = el("span"); confirm.hidden = true; confirm.append(el("span", t("reset_confirm") + " "), yes, " ", no);
    const resetResult = el("p", null, "result"); resetResult.dataset.role = "reset-result";
    reset.addEventListener("click", () => { confirm.hidden = false; });
    no.addEventListener("click", () => { confirm.hidden = true; });
    yes.addEventListener("click", async () => {
      confirm.hidden = true;
      try { await api("POST", "/api/gateway/logout?account=" + q); resetResult.textContent = t("reset_done"); resetResult.className = "result"; }
      catch (err) { resetResult.textContent = err.message; resetResult.className = "result error"; }
    });
    const resetBox = el("div"); resetBox.append(reset, " ", confirm, resetResult);
    c.root.append(title, line, c.next, c.detail, c.waiting, c.pacing, c.qr, c.counts, pair, resetBox);
    cards.set(name, c);
    return c;
  }
  function renderAccounts(s) {
    const accounts = s.accounts || [];
    const several = accounts.length > 1;
    $("whatsapp-account").textContent = several ? accounts[0].name : "";
    const pick = $("find-form").elements.namedItem("account");
    $("find-account-label").hidden = !several;
    if (several && pick.options.length !== accounts.length + 1) {
      pick.replaceChildren(el("option", t("find_any")));
      pick.options[0].value = "";
      for (const a of accounts) { const o = el("option", a.name); o.value = a.name; pick.append(o); }
    }
    const box = $("accounts"); box.hidden = !several;
    const shown = [];
    accounts.slice(1).forEach((a, i) => {
      const c = accountCard(a.name);
      const status = accountStatus(a);
      const st = T[lang].st[status] || [status, a.gateway.detail];
      c.pill.textContent = st[0]; c.pill.className = "pill " + tone(status); c.pill.dataset.status = status;
      c.name.textContent = [a.gateway.pushName, a.gateway.ownNumber].filter(Boolean).join(" · ");
      c.next.textContent = st[1];
      c.detail.textContent = a.gateway.detail || "";
      // Linked, yet its jobs wait (the dispatcher cannot reach it, or it holds
      // another account): the state alone does not say why.
      const stuck = status === "connected" && !a.ready && a.waitingReason;
      c.waiting.hidden = !stuck;
      c.waiting.textContent = stuck ? t("waiting") + a.waitingReason : "";
      renderPacing(c.pacing, a.gateway.pacing);
      renderAccountCounts(c.counts, a.counts);
      const svg = (s.accountQrSvgs || [])[i + 1];
      if (svg) { if (c.qr.dataset.svg !== svg) { c.qr.innerHTML = svg; c.qr.dataset.svg = svg; } }
      else { c.qr.innerHTML = ""; c.qr.dataset.svg = ""; }
      shown.push(c.root);
    });
    box.replaceChildren(...shown);
  }


  // The day at a glance: /api/stats in the browser's time zone, drawn with Chart.js,
  // every minute.
  const charts = {};
  const pct = (share) => share == null ? "–" : Math.round(share * 100) + "%";
  const COLORS = { sent: "#1f5fbf", delivered: "#16794c", read: "#6b3fa0", failed: "#b42318" };
  function drawChart(id, buckets, label) {
    const data = {
      labels: buckets.map((b) => label(new Date(b.start))),
      datasets: ["sent", "delivered", "read", "failed"].map((k) => ({ label: t("c_" + k), data: buckets.map((b) => b[k]), backgroundColor: COLORS[k] })),
    };
    if (charts[id]) { charts[id].data = data; charts[id].update(); return; }
    if (typeof Chart === "undefined") return;
    charts[id] = new Chart($(id), {
      type: "bar", data,
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } },
    });
  }
  const totalsLine = (key, x) => fill(t(key), {
    sent: x.sent, delivered: x.delivered + " (" + pct(x.deliveredShare) + ")", read: x.read + " (" + pct(x.readShare) + ")", failed: x.failed,
  });
  async function loadStats() {
    try {
      const st = await api("GET", "/api/stats?utcOffset=" + (-new Date().getTimezoneOffset()));
      $("today-day").textContent = totalsLine("today_line", st.lastDay);
      $("today-month").textContent = totalsLine("month_line", st.lastMonth);
      const locale = lang === "id" ? "id-ID" : "en-GB";
      drawChart("chart-hours", st.hours, (d) => d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", hour12: false }));
      drawChart("chart-days", st.days, (d) => d.toLocaleDateString(locale, { day: "numeric", month: "short" }));
      const list = $("reasons"); list.replaceChildren();
      for (const r of st.reasons) {
        const li = el("li"); li.dataset.code = r.code;
        li.append(el("b", r.code || "?"), " × " + r.count + " ", el("span", r.message, "muted"));
        list.append(li);
      }
      $("reasons-empty").hidden = st.reasons.length > 0;
      $("today").dataset.loaded = st.at;
      show("stats-result", "");
    } catch (err) { show("stats-result", err.message, true); }
  }
  loadStats();
  setInterval(loadStats, 60000);

  // Finding a job: the form's filter as /api/jobs parameters (dates are the
  // browser's days), a page at a time; the same filter as the CSV link.
  let cursor = null;
  function filter() {
    // `elements`: the form's own `id` property would hide the field named id.
    const f = $("find-form").elements, q = new URLSearchParams();
    const value = (k) => f.namedItem(k).value.trim();
    for (const k of ["phone", "id", "status", "account"]) if (value(k)) q.set(k, value(k));
    if (value("from")) q.set("from", new Date(value("from") + "T00:00:00").toISOString());
    if (value("until")) { const d = new Date(value("until") + "T00:00:00"); d.setDate(d.getDate() + 1); q.set("until", d.toISOString()); }
    return q;
  }
  function csvLink() { $("find-csv").href = "/api/jobs.csv?" + filter().toString(); }
  $("find-form").addEventListener("input", csvLink);
  $("find-form").addEventListener("change", csvLink);
  async function find(more) {
    const q = filter();
    if (more && cursor) q.set("cursor", cursor);
    try {
      const page = await api("GET", "/api/jobs?" + q.toString());
      const body = $("found").tBodies[0];
      if (!more) body.replaceChildren();
      for (const j of page.jobs) {
        const tr = el("tr"); tr.dataset.id = j.id; tr.dataset.status = j.status;
        const cell = (label, text, cls) => { const td = el("td", text, cls); td.dataset.label = t(label); return td; };
        const stc = cell("col_status"); stc.append(el("span", t(j.status), "pill status " + tone(j.status))); tr.append(stc);
        tr.append(toCell(cell, j), cell("col_attempts", String(j.attempts)));
        tr.append(cell("col_error", j.lastError ? j.lastError.code + ": " + j.lastError.message : "", "err"));
        tr.append(cell("col_created", time(j.createdAt), "muted"));
        tr.addEventListener("click", () => openJob(j.id));
        body.append(tr);
      }
      cursor = page.nextCursor;
      $("find-more").hidden = !cursor;
      $("found").hidden = body.children.length === 0;
      show("find-result", body.children.length ? fill(t("find_count"), { n: body.children.length }) : t("find_none"));
    } catch (err) { show("find-result", err.message, true); }
  }
  $("find-form").addEventListener("submit", (e) => { e.preventDefault(); find(false); });
  $("find-more").addEventListener("click", () => find(true));
  csvLink();

  // One job's story: its fields, then each step with its time; retry when failed.
  let shownJob = null;
  function stepLine(s) {
    const error = s.error ? s.error.code + ": " + s.error.message : "";
    return fill(t("s_" + s.kind), { n: s.attempt, owner: s.owner || "", error, t: time(s.nextAttemptAt) || "–" });
  }
  // A job's media in a word: its kind and, for a document, its file name.
  function mediaText(m) { return m ? [t("media_" + m.kind), m.fileName].filter(Boolean).join(": ") : ""; }
  function toCell(cell, j) {
    const td = cell("col_to", j.recipient || j.to);
    if (j.media) { td.append(el("br"), el("span", mediaText(j.media), "muted media")); }
    return td;
  }
  async function openJob(id) {
    shownJob = id;
    try {
      const j = await api("GET", "/api/jobs/" + encodeURIComponent(id));
      $("detail-id").textContent = j.id;
      const dl = $("detail-fields"); dl.replaceChildren();
      const field = (key, value) => { if (value == null || value === "") return; dl.append(el("dt", t(key)), el("dd", String(value))); };
      field("f_status", t(j.status)); field("f_to", j.to); field("f_recipient", j.recipient); field("f_account", j.account);
      field("f_attempts", j.attempts); field("f_message", j.message); field("f_media", mediaText(j.media));
      const ol = $("detail-steps"); ol.replaceChildren();
      const step = (at, text, kind) => { const li = el("li", null, tone(kind) === "ok" ? "ok" : (kind === "failed" ? "bad" : "")); li.dataset.kind = kind; li.append(el("span", time(at) + " ", "muted"), el("span", text)); ol.append(li); };
      step(j.createdAt, t("s_created"), "created");
      if (j.sendAt) step(j.createdAt, fill(t("s_scheduled"), { t: time(j.sendAt) }), "scheduled");
      for (const s of j.steps || []) step(s.at, stepLine(s), s.kind);
      $("detail-retry").hidden = j.status !== "failed";
      show("detail-result", "");
      if (!$("job-detail").open) $("job-detail").showModal();
    } catch (err) { show("find-result", err.message, true); }
  }
  $("detail-close").addEventListener("click", () => $("job-detail").close());
  $("detail-retry").addEventListener("click", async () => {
    try { await api("POST", "/api/jobs/" + encodeURIComponent(shownJob) + "/retry"); await openJob(shownJob); }
    catch (err) { show("detail-result", err.message, true); }
  });

  function tick() {
    const g = state && state.gateway;
    if (!g || !state.qrSvg || !g.qrExpiresAt) { $("qr-countdown").textContent = ""; return; }
    const left = Math.round((new Date(g.qrExpiresAt) - Date.now()) / 1000);
    $("qr-countdown").textContent = left > 0 ? t("qr_expires").replace("{s}", left) : t("qr_expired");
  }
  setInterval(tick, 1000);

  async function api(method, path, body) {
    // Every API write is JSON, with or without a body (see docs/dashboard.md).
    const r = await fetch(path, { method, credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
    if (r.status === 401) { location.href = "/login"; throw new Error("401"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    return data;
  }
  function show(id, text, error) { const p = $(id); p.textContent = text; p.className = "result" + (error ? " error" : ""); }

  // A file goes inline, as base64; larger ones belong on a URL (docs/media.md).
  const MAX_FILE = 3 * 1024 * 1024;
  function base64Of(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }
  $("send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      const body = { to: f.to.value, message: f.message.value };
      const file = f.file.files[0];
      if (file) {
        if (file.size > MAX_FILE) throw new Error(t("send_file_too_big"));
        body.media = { data: await base64Of(file), fileName: file.name };
        if (file.type) body.media.mimeType = file.type;
      }
      const job = await api("POST", "/api/messages", body);
      show("send-result", t("send_done") + job.id); f.message.value = ""; f.file.value = "";
    } catch (err) { show("send-result", err.message, true); }
  });
  $("pair-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/api/gateway/pair-code", { phone: e.target.phone.value });
      const p = $("pair-result"); p.className = "result"; p.replaceChildren(el("span", t("pair_code") + " "), el("span", r.code, "pair-code"));
    } catch (err) { show("pair-result", err.message, true); }
  });
  $("reset-button").addEventListener("click", () => { $("reset-confirm").hidden = false; });
  $("reset-no").addEventListener("click", () => { $("reset-confirm").hidden = true; });
  $("reset-yes").addEventListener("click", async () => {
    $("reset-confirm").hidden = true;
    try { await api("POST", "/api/gateway/logout"); show("reset-result", t("reset_done")); } catch (err) { show("reset-result", err.message, true); }
  });
  $("pause-button").addEventListener("click", async () => {
    try { await api("POST", state && state.queue.paused ? "/api/queue/resume" : "/api/queue/pause"); show("queue-result", ""); }
    catch (err) { show("queue-result", err.message, true); }
  });

  const live = $("live");
  const socket = io();
  socket.on("connect", () => { live.textContent = t("live_on"); live.dataset.state = "on"; live.className = "pill ok"; });
  socket.on("disconnect", () => { live.textContent = t("live_off"); live.dataset.state = "off"; live.className = "pill bad"; });
  socket.on("connect_error", () => {
    live.textContent = t("live_off"); live.dataset.state = "off"; live.className = "pill bad";
    fetch("/api/status", { credentials: "same-origin" }).then((r) => { if (r.status === 401) location.href = "/login"; }).catch(() => {});
  });
  socket.on("snapshot", render);
})();
