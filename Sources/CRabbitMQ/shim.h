// librabbitmq (rabbitmq-c 0.11): AMQP 0-9-1 client, plain TCP and TLS sockets.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>

// amqp_login_with_properties is variadic (its SASL arguments), which Swift cannot call.
static inline amqp_rpc_reply_t lifeboat_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
        int channel_max, int frame_max, int heartbeat, const amqp_table_t *properties,
        const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

static inline amqp_rpc_reply_t lifeboat_amqp_login_external(amqp_connection_state_t state, const char *vhost,
        int channel_max, int frame_max, int heartbeat, const amqp_table_t *properties, const char *identity) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_EXTERNAL, identity);
}
