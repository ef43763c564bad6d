#include "engines/mysql/traffic.h"

#include <fmt/format.h>

#include "base/log.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/phase.h"
#include "control/phase_driver.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "proxy/mysql/mysql_proxy.h"

namespace midflight {

Result<std::unique_ptr<proxy::TrafficSwitch>> StartMySqlProxy(const MigrationSpec& spec, StateStore& store) {
  proxy::MySqlProxyConfig pc;
  pc.migration = spec.name;
  pc.listen_rw = spec.proxy.listen;
  pc.listen_ro = spec.proxy.listen_readonly;
  pc.tls_cert = spec.proxy.tls_cert;
  pc.tls_key = spec.proxy.tls_key;
  pc.max_clients = spec.proxy.max_clients;
  pc.loops = spec.proxy.loops;
  pc.max_unauthenticated = spec.proxy.max_unauthenticated;
  pc.auth_timeout = std::chrono::milliseconds(static_cast<int64_t>(spec.proxy.auth_timeout_seconds * 1000));
  for (const auto& u : spec.proxy.users) pc.users.push_back({u.name, u.password});
  // Applications write to the source primary (`source`), never to the replica midflight reads.
  const std::string* uris[2] = {&spec.source, &spec.target};
  for (int i = 0; i < 2; ++i) {
    auto u = ParseUri(*uris[i]);
    if (!u.ok()) return u.status().WithContext(i == 0 ? "source" : "target");
    proxy::MySqlServer& a = pc.servers[i];
    a.host = u->host.empty() ? "127.0.0.1" : u->host;
    a.port = u->port ? u->port : 3306;
    a.user = u->user;
    a.password = u->password;
    // TLS from the proxy to this server, as MySQL's URIs say it.
    for (const auto& [k, v] : u->params) {
      if (k == "ssl-mode" || k == "ssl_mode" || k == "sslmode") {
        auto mode = proxy::ParseMySqlSslMode(v);
        if (!mode.ok()) return mode.status().WithContext(i == 0 ? "source" : "target");
        a.ssl_mode = *mode;
      } else if (k == "ssl-ca" || k == "ssl_ca") {
        a.ssl_ca = v;
      }
    }
  }
  // The plugin clients must use; empty: the one the source's handshake announces.
  pc.client_auth = spec.proxy.auth;
  ASSIGN_OR_RETURN(auto proxy, proxy::MySqlProxy::Start(std::move(pc)));
  Phase phase = store.phase();
  if (phase == Phase::kFailed || phase == Phase::kPaused)
    phase = ParsePhase(store.Get("resume_phase").value_or("created")).value_or(Phase::kCreated);
  if (phase == Phase::kWritesSwitched || phase == Phase::kCompleted) proxy->SetWriteSide(proxy::Side::kTarget);
  int64_t percent = 0;
  const std::string stored = store.Get("read_percent").value_or("0");
  if (!ParseI64(stored, &percent) || percent < 0 || percent > 100)
    return Internal(fmt::format("state store: read_percent '{}' is not a percentage", stored));
  proxy->SetReadPercent(static_cast<int>(percent));
  RETURN_IF_ERROR(store.PutMany({{"proxy_rw", proxy->rw_address()}, {"proxy_ro", proxy->ro_address()}}));
  Say(fmt::format("proxy (MySQL): read-write {} and read-only {}, writes to the {}, {}% of reads to the target",
                  proxy->rw_address(), proxy->ro_address().empty() ? "(none)" : proxy->ro_address(),
                  proxy->write_side() == proxy::Side::kSource ? "source" : "target", proxy->read_percent()));
  return std::unique_ptr<proxy::TrafficSwitch>(std::move(proxy));
}

}  // namespace midflight
