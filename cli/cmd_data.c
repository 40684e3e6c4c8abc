/* Placeholder: 'cwtctl data' is being built (see the open issues). */
#include "cli/cli.h"

int cmd_data(int argc, char **argv, const struct cli_globals *g)
{
    (void)argc;
    (void)g;
    return cli_error(CLI_FAIL, "'%s' is not available in this build yet", argv[0]);
}
