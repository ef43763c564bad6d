// Loopback sockets for tests: TCP on 127.0.0.1, on a port the kernel picks.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace midflight::loopback {

struct BoundSocket {
  int fd = -1;  // -1 when the socket could not be bound
  int port = 0;
};

// A socket bound to 127.0.0.1 on a free port (not listening yet).
inline BoundSocket BindLoopback(int type_flags = 0) {
  BoundSocket s;
  int fd = socket(AF_INET, SOCK_STREAM | type_flags, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) close(fd);
    return s;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  s.fd = fd;
  s.port = ntohs(addr.sin_port);
  return s;
}

// A loopback port where nothing listens (bound, then closed).
inline int ClosedLoopbackPort() {
  BoundSocket s = BindLoopback();
  if (s.fd >= 0) close(s.fd);
  return s.port;
}

}  // namespace midflight::loopback
