// librabbitmq (rabbitmq-c 0.11): AMQP 0-9-1 client, plain TCP and TLS sockets.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
