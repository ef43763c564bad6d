// Being written: binlog decoder tests on captured events.
#include "source/mysql/binlog_event.h"
