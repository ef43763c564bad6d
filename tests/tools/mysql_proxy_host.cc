// Runs the MySQL proxy (proxy/mysql/mysql_proxy.h) for tests, without a
// migration around it, and takes the cutover's part on stdin.
//
//   mysql_proxy_host --rw HOST:PORT [--ro HOST:PORT] --source HOST:PORT --target HOST:PORT
//                    [--server-user U --server-password P] [--user NAME:PASSWORD]...
//                    [--tls-cert F --tls-key F] [--auth-timeout-ms N] [--max-clients N]
//                    [--max-unauthenticated N] [--loops N] [--client-auth PLUGIN]
//                    [--source-ssl-mode MODE --source-ssl-ca F] [--target-ssl-mode MODE --target-ssl-ca F]
//
// Prints "ready rw=ADDR ro=ADDR", then answers one line per command:
//   pause MS        -> "ok paused <ms the drain took>" | "error <why>"
//   resume          -> "ok resumed"
//   side source|target -> "ok side <side>"
//   percent N       -> "ok percent N"
//   stats           -> "stats clients_rw=.. clients_ro=.. connections=.. auth_failures=.. protocol_errors=..
//                       tx_source=.. tx_target=.. connects_source=.. connects_target=.. moves=.. pinned=.."
//   pinned source|target -> "pinned N[: line | line ...]"
// and exits when stdin closes or on "quit".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <fmt/format.h>

#include "proxy/mysql/mysql_proxy.h"

using midflight::proxy::MySqlProxy;
using midflight::proxy::MySqlProxyConfig;
using midflight::proxy::Side;

namespace {

bool HostPort(const std::string& s, std::string* host, int* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  *port = std::atoi(s.c_str() + colon + 1);
  return *port > 0;
}

}  // namespace

int main(int argc, char** argv) {
  MySqlProxyConfig c;
  c.migration = "test";
  std::string server_user = "midflight", server_password = "midflight";
  bool have_users = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--rw") c.listen_rw = v;
    else if (k == "--ro") c.listen_ro = v;
    else if (k == "--source" || k == "--target") {
      auto& s = c.servers[k == "--source" ? 0 : 1];
      if (!HostPort(v, &s.host, &s.port)) {
        std::fprintf(stderr, "mysql_proxy_host: %s is not HOST:PORT\n", v.c_str());
        return 2;
      }
    } else if (k == "--server-user") server_user = v;
    else if (k == "--server-password") server_password = v;
    else if (k == "--user") {
      auto colon = v.find(':');
      c.users.push_back({v.substr(0, colon), colon == std::string::npos ? "" : v.substr(colon + 1)});
      have_users = true;
    } else if (k == "--source-ssl-mode" || k == "--target-ssl-mode") {
      auto mode = midflight::proxy::ParseMySqlSslMode(v);
      if (!mode.ok()) {
        std::fprintf(stderr, "mysql_proxy_host: %s\n", mode.status().message().c_str());
        return 2;
      }
      c.servers[k == "--source-ssl-mode" ? 0 : 1].ssl_mode = *mode;
    } else if (k == "--source-ssl-ca" || k == "--target-ssl-ca") {
      c.servers[k == "--source-ssl-ca" ? 0 : 1].ssl_ca = v;
    } else if (k == "--client-auth") c.client_auth = v;
    else if (k == "--tls-cert") c.tls_cert = v;
    else if (k == "--tls-key") c.tls_key = v;
    else if (k == "--auth-timeout-ms") c.auth_timeout = std::chrono::milliseconds(std::atoi(v.c_str()));
    else if (k == "--max-clients") c.max_clients = std::atoi(v.c_str());
    else if (k == "--max-unauthenticated") c.max_unauthenticated = std::atoi(v.c_str());
    else if (k == "--loops") c.loops = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "mysql_proxy_host: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  for (auto& s : c.servers) {
    s.user = server_user;
    s.password = server_password;
  }
  if (!have_users) c.users.push_back({server_user, server_password});
  if (c.listen_rw.empty()) {
    std::fprintf(stderr, "usage: mysql_proxy_host --rw HOST:PORT [--ro HOST:PORT] --source HOST:PORT --target HOST:PORT ...\n");
    return 2;
  }
  auto proxy = MySqlProxy::Start(c);
  if (!proxy.ok()) {
    std::fprintf(stderr, "mysql_proxy_host: %s\n", proxy.status().ToString().c_str());
    return 1;
  }
  MySqlProxy& p = **proxy;
  std::cout << "ready rw=" << p.rw_address() << " ro=" << p.ro_address() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::string cmd = line.substr(0, line.find(' '));
    std::string arg = line.find(' ') == std::string::npos ? "" : line.substr(line.find(' ') + 1);
    if (cmd == "quit") break;
    if (cmd == "pause") {
      auto t0 = std::chrono::steady_clock::now();
      auto st = p.PauseWrites(std::chrono::milliseconds(std::atoi(arg.c_str())));
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      if (st.ok()) std::cout << "ok paused " << ms << std::endl;
      else std::cout << "error " << st.message() << std::endl;
    } else if (cmd == "resume") {
      p.ResumeWrites();
      std::cout << "ok resumed" << std::endl;
    } else if (cmd == "side") {
      p.SetWriteSide(arg == "target" ? Side::kTarget : Side::kSource);
      std::cout << "ok side " << (p.write_side() == Side::kTarget ? "target" : "source") << std::endl;
    } else if (cmd == "percent") {
      p.SetReadPercent(std::atoi(arg.c_str()));
      std::cout << "ok percent " << p.read_percent() << std::endl;
    } else if (cmd == "stats") {
      auto s = p.stats();
      std::cout << fmt::format(
                       "stats clients_rw={} clients_ro={} connections={} auth_failures={} protocol_errors={} "
                       "tx_source={} tx_target={} connects_source={} connects_target={} moves={} pinned={}",
                       s.clients_rw, s.clients_ro, s.connections, s.auth_failures, s.protocol_errors, s.transactions[0],
                       s.transactions[1], s.server_connects[0], s.server_connects[1], s.session_moves, s.pinned_sessions)
                << std::endl;
    } else if (cmd == "pinned") {
      auto v = p.PinnedSessions(arg == "target" ? Side::kTarget : Side::kSource);
      std::string out = fmt::format("pinned {}", v.size());
      for (size_t i = 0; i < v.size(); ++i) out += (i == 0 ? ": " : " | ") + v[i];
      std::cout << out << std::endl;
    } else if (!cmd.empty()) {
      std::cout << "error unknown command " << cmd << std::endl;
    }
  }
  p.Stop();
  return 0;
}
